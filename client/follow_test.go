//go:build unix

package client

import (
	"crypto/ecdsa"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestFollow: Follow takes a credential stored since the session opened
// for the same gate and user, once; it says once why it does not take
// another user's, another gate's, or one others may read, and keeps its
// own; the same credential written again, or none (a logout), changes
// nothing.
func TestFollow(t *testing.T) {
	dir := newProfile(t) // alice at g:1, pin ab
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	first := s.cert.Certificate[0]
	store := func(p Profile, cn string) []byte {
		t.Helper()
		time.Sleep(10 * time.Millisecond) // another modification time, as a later login has
		c := selfSigned(t, cn)
		if err := storeLogin(dir, &p, c.PrivateKey.(*ecdsa.PrivateKey), c.Certificate, nil); err != nil {
			t.Fatal(err)
		}
		return c.Certificate[0]
	}
	follow := func(what string, wantSwitch bool, wantErr string) {
		t.Helper()
		sw, err := s.Follow()
		if (sw != nil) != wantSwitch || (err == nil) != (wantErr == "") || err != nil && !strings.Contains(err.Error(), wantErr) {
			t.Errorf("Follow after %s: %+v, %v; want a switch %v, an error with %q", what, sw, err, wantSwitch, wantErr)
		}
	}
	follow("nothing new", false, "")
	alice := Profile{Gate: "g:1", Pin: testPin, User: "alice"}

	// Another user's, another gate's: said once each, not taken.
	store(Profile{Gate: "g:1", Pin: testPin, User: "bob"}, "bob")
	follow("a login as bob", false, "holds a new credential for bob at g:1, not taken: this connect is alice's; new connections keep the credential of alice for g:1")
	follow("a login as bob, again", false, "")
	store(Profile{Gate: "g:2", Pin: otherPin, User: "alice"}, "alice")
	follow("a login to g:2", false, "holds a new credential for alice at g:2, not taken: this connect is for g:1")
	store(Profile{Gate: "g:1", Pin: otherPin, User: "alice"}, "alice")
	follow("a login to g:1 with another key", false, "not taken: the gate's key pinned with it is not the one this connect checks (SHA-256 "+testPin+")")
	// One others may read.
	store(alice, "alice")
	if err := os.Chmod(filepath.Join(dir, KeyFile), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = s.Follow()
	var ue *UnprotectedError
	if !errors.As(err, &ue) || !strings.HasPrefix(err.Error(), "the profile "+dir+" holds a new credential that cannot be used (UNPROTECTED PRIVATE KEY: ") {
		t.Errorf("Follow after a login whose key is 0644: %v, want an UnprotectedError", err)
	}
	if string(s.cert.Certificate[0]) != string(first) {
		t.Fatal("a credential not taken replaced the session's")
	}

	// The same gate and user: taken, once.
	next := store(alice, "alice")
	follow("a new login of alice", true, "")
	if string(s.cert.Certificate[0]) != string(next) {
		t.Error("the session does not use the new credential")
	}
	follow("the same credential", false, "")
	// Written again (a copy), or gone (a logout): nothing changes.
	b, err := os.ReadFile(filepath.Join(dir, CertFile))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond)
	if err := writeFileAtomic(filepath.Join(dir, CertFile), b); err != nil {
		t.Fatal(err)
	}
	follow("the same certificate written again", false, "")
	if err := RemoveProfile(dir); err != nil {
		t.Fatal(err)
	}
	follow("a logout", false, "")
	if string(s.cert.Certificate[0]) != string(next) {
		t.Error("the session lost its credential")
	}
}
