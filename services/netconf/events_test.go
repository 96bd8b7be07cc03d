package netconf

import (
	"strings"
	"testing"
	"time"
)

// waitEvent waits for an event of kind (matching ok, if not nil) after
// seq, and returns it.
func waitEvent(t *testing.T, r *Ring, after uint64, kind EventKind, timeout time.Duration, ok func(Event) bool) Event {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		evs, wake := r.Since(after)
		for _, e := range evs {
			if e.Kind == kind && (ok == nil || ok(e)) {
				return e
			}
			after = e.Seq
		}
		select {
		case <-wake:
		case <-deadline.C:
			all, _ := r.Since(0)
			var lines []string
			for _, e := range all {
				lines = append(lines, e.String())
			}
			t.Fatalf("no %s event within %s; events:\n%s", kind, timeout, strings.Join(lines, "\n"))
		}
	}
}
