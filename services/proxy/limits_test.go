package proxy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/otgate/otgate/client"
)

// TestLimitsIdleAuditFailure checks the session limits, the idle timeout,
// the certificate pin, logout, and that a gate whose audit log cannot be
// written refuses sessions.
func TestLimitsIdleAuditFailure(t *testing.T) {
	l := newLab(t)
	go serveEcho(l.listenPlant(t, 7))
	g := newGate(t, l, func(c *Config) {
		c.MaxSessionsPerUser, c.MaxSessions = 1, 2
		c.IdleTimeout = 2 * time.Second
	})
	g.setGrants(
		grant{rule: "a", user: "alice", asset: "echo-1", protocol: "tcp"},
		grant{rule: "b", user: "bob", asset: "echo-1", protocol: "tcp"},
		grant{rule: "c", user: "carol", asset: "echo-1", protocol: "tcp"},
	)
	alice, bob, carol := g.mustLogin("alice"), g.mustLogin("bob"), g.mustLogin("carol")

	a1, _, err := tunnel(t, alice, "echo-1", "tcp")
	if err != nil {
		t.Fatal(err)
	}
	defer a1.Close()
	_, _, err = tunnel(t, alice, "echo-1", "tcp")
	denied(t, err, `session limit of user "alice" reached (1 live sessions)`)
	g.waitEvent(EventSessionRefused, "alice", "session limit")
	b1, rb, err := tunnel(t, bob, "echo-1", "tcp")
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = tunnel(t, carol, "echo-1", "tcp")
	denied(t, err, "gate session limit reached (2 live sessions)")

	// Idle: bob's session sees no byte and ends; alice keeps hers alive.
	deadline := time.Now().Add(4 * time.Second)
	for time.Now().Before(deadline) {
		echoRoundTrip(t, a1, "keepalive")
		sleepMs(300)
	}
	waitClosed(t, b1, 30*time.Second)
	g.waitEnd(rb.Session, EndIdle)
	echoRoundTrip(t, a1, "still here")
	a1.Close()

	// A changed gate certificate is refused by the pin.
	orig := carol.Profile.Pin
	carol.Profile.Pin = strings.Repeat("0", 64)
	_, _, err = tunnel(t, carol, "echo-1", "tcp")
	if err == nil || !strings.Contains(err.Error(), "gate certificate changed") {
		t.Fatalf("tunnel with a wrong pin: %v", err)
	}
	carol.Profile.Pin = orig

	// Logout: the gate bumps the generation and the files are gone.
	if err := carol.Logout(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(carol.Dir, client.KeyFile)); !os.IsNotExist(err) {
		t.Fatalf("key file after logout: %v", err)
	}
	g.waitEvent(EventLogout, "carol", "")

	// No unlogged session: with the log gone, sessions are refused.
	g.log.Close()
	_, _, err = tunnel(t, bob, "echo-1", "tcp")
	denied(t, err, "cannot record the session")
}
