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
	err = s.Logout(ctx)
	if ge, ok := refusedCredential(err); ok {
		// Nothing is left to invalidate: the gate no longer accepts the
		// credential (expired, or revoked already).
		fmt.Fprintf(out, "deleted the credential of %s for %s; the gate had already stopped accepting it (%s)\n", s.Profile.User, s.Profile.Gate, ge.Msg)
		return nil
	}
	if err != nil {
		// The local files are gone either way (client.Session.Logout), so
		// running logout again cannot help: say what still holds.
		until := "until it expires"
		if !s.Profile.Expiry.IsZero() {
			until = "until " + s.Profile.Expiry.Local().Format("2006-01-02 15:04:05 MST")
		}
		return fmt.Errorf("deleted the local credential, but could not tell the gate (%v): the certificate stays valid at the gate %s; to end it sooner, ask the gate's administrator to run otgate admin user revoke %s", err, until, s.Profile.User)
	}
	fmt.Fprintf(out, "logged out of %s: every certificate of %s is invalid now\n", s.Profile.Gate, s.Profile.User)
	return nil
}
