package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"
)

func init() {
	register(command{name: "logout", summary: "invalidate your certificates at the gate and delete them here",
		run: func(args []string) error { return runLogout(args, os.Stdout) }})
}

func runLogout(args []string, out io.Writer) error {
	s, err := openProfile("logout", args)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Logout(ctx); err != nil {
		return fmt.Errorf("local credential deleted, but the gate was not told: %w", err)
	}
	fmt.Fprintf(out, "logged out of %s: every certificate of %s is invalid now\n", s.Profile.Gate, s.Profile.User)
	return nil
}
