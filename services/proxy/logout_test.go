package proxy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/otgate/otgate/client"
)

// TestLogoutEndsLiveSession: `otgate logout` (client.Logout, the login
// ALPN's logout) ends the user's live sessions through the gate at once,
// with the reason in the session-end record, and the certificate it used
// is refused afterwards, even presented again from memory.
func TestLogoutEndsLiveSession(t *testing.T) {
	l := newLab(t)
	go serveEcho(l.listenPlant(t, 7))
	g := newGate(t, l)
	g.setGrants(
		grant{rule: "alice-echo", user: "alice", asset: "echo-1", protocol: "tcp"},
		grant{rule: "bob-echo", user: "bob", asset: "echo-1", protocol: "tcp"},
	)
	alice, bob := g.mustLogin("alice"), g.mustLogin("bob")
	c1, r1, err := tunnel(t, alice, "echo-1", "tcp")
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	c2, r2, err := tunnel(t, alice, "echo-1", "tcp")
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	cb, _, err := tunnel(t, bob, "echo-1", "tcp")
	if err != nil {
		t.Fatal(err)
	}
	defer cb.Close()
	echoRoundTrip(t, c1, "before logout")
	echoRoundTrip(t, c2, "before logout")

	if err := alice.Logout(t.Context()); err != nil {
		t.Fatal(err)
	}
	g.waitEvent(EventLogout, "alice", "")
	for _, sess := range []string{r1.Session, r2.Session} {
		end := g.waitEnd(sess, EndRevoked)
		if want := "logged out or revoked"; !strings.Contains(end.Reason, want) {
			t.Errorf("session %s ended with %q, want it to say %q", sess, end.Reason, want)
		}
	}
	waitClosed(t, c1, 10*time.Second)
	waitClosed(t, c2, 10*time.Second)
	if _, err := os.Stat(filepath.Join(alice.Dir, client.CertFile)); !os.IsNotExist(err) {
		t.Errorf("certificate file after logout: %v", err)
	}
	// The session object still holds the old certificate: refused.
	_, _, err = tunnel(t, alice, "echo-1", "tcp")
	denied(t, err, "logged out or revoked")
	g.waitEvent(EventSessionRefused, "alice", "logged out or revoked")

	// Another user's session goes on.
	echoRoundTrip(t, cb, "bob is still here")
}
