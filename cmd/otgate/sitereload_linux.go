//go:build linux

package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/otgate/otgate/internal/policyreload"
	"github.com/otgate/otgate/site"
)

// reloadServices is the last step of an apply on a running gate: the
// proxy is asked to reload, and segment, overlay and netconf (which watch
// the policy file) are waited for. It prints one line a service and
// returns an error when one of them did not take the new policy (the
// policy is stored all the same: the next boot measures and enforces it).
func reloadServices(out io.Writer, t applyTarget, doc []byte, since time.Time) error {
	if t.services == nil {
		return nil
	}
	a, err := site.Decode(doc)
	if err != nil {
		return fmt.Errorf("site: %w", err)
	}
	wait := t.reloadWait
	if wait == 0 {
		wait = policyreload.DefaultWait
	}
	res := policyreload.Run(context.Background(), *t.services, a, since, wait)
	for _, o := range res {
		fmt.Fprintf(out, "site: %s\n", o)
	}
	if n := policyreload.Failures(res); n > 0 {
		return fmt.Errorf("site: the policy is stored (and measured from the next boot on) but %d running service(s) did not take it: see the FAILED lines above", n)
	}
	return nil
}
