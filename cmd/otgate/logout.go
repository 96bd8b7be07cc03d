package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/otgate/otgate/client"
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
	if err == nil {
		fmt.Fprintf(out, "logged out of %s: every certificate of %s is invalid now\n", s.Profile.Gate, s.Profile.User)
		return nil
	}
	var le *client.LogoutError
	if !errors.As(err, &le) {
		return err
	}
	until := "until it expires"
	if !s.Profile.Expiry.IsZero() {
		until = "until " + s.Profile.Expiry.Local().Format("2006-01-02 15:04:05 MST")
	}
	if le.Remove != nil {
		// The credential is still on this computer: say so, and what the
		// gate holds, never that it was deleted.
		kept := fmt.Sprintf("could not delete the local credential (%v): delete the files in %s by hand", le.Remove, s.Dir)
		if ge, ok := refusedCredential(le.Gate); ok {
			return fmt.Errorf("%s; the gate had already stopped accepting it (%s)", kept, ge.Msg)
		}
		if le.Gate == nil {
			return fmt.Errorf("the gate invalidated every certificate of %s, but %s", s.Profile.User, kept)
		}
		return fmt.Errorf("%s; nor could the gate be told (%v): the certificate stays valid at the gate %s; to end it sooner, ask the gate's administrator to run otgate admin user revoke %s", kept, le.Gate, until, s.Profile.User)
	}
	if ge, ok := refusedCredential(le.Gate); ok {
		// Nothing is left to invalidate: the gate no longer accepts the
		// credential (expired, or revoked already).
		fmt.Fprintf(out, "deleted the credential of %s for %s; the gate had already stopped accepting it (%s)\n", s.Profile.User, s.Profile.Gate, ge.Msg)
		return nil
	}
	// The local files are gone, so running logout again cannot help: say
	// what still holds.
	return fmt.Errorf("deleted the local credential, but could not tell the gate (%v): the certificate stays valid at the gate %s; to end it sooner, ask the gate's administrator to run otgate admin user revoke %s", le.Gate, until, s.Profile.User)
}
