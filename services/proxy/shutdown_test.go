package proxy

import (
	"testing"
	"time"
)

// Shutdown ends every live session with the reason it is given (the
// proxy's main passes the quarantine reason), and the listener stops.
func TestShutdownRecordsReason(t *testing.T) {
	l := newLab(t)
	go serveEcho(l.listenPlant(t, 7))
	g := newGate(t, l)
	g.setGrants(grant{rule: "alice-echo", user: "alice", asset: "echo-1", protocol: "tcp"})
	alice := g.mustLogin("alice")
	c, r, err := tunnel(t, alice, "echo-1", "tcp")
	if err != nil {
		t.Fatal(err)
	}
	echoRoundTrip(t, c, "before quarantine")

	reason := EndQuarantine + ": PCR 15 differs"
	if err := g.srv.Shutdown(reason); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, c, 30*time.Second)
	if end := g.waitEnd(r.Session, reason); end.Reason != reason {
		t.Fatalf("end record reason %q, want %q", end.Reason, reason)
	}
	if _, _, err := tunnel(t, alice, "echo-1", "tcp"); err == nil {
		t.Fatal("a tunnel was accepted after Shutdown")
	}
	// Close after Shutdown is a no-op, not a second set of end records.
	if err := g.srv.Close(); err != nil {
		t.Fatal(err)
	}
}
