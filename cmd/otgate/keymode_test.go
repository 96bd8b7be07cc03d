//go:build unix

package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/otgate/otgate/client"
	"github.com/otgate/otgate/services/proxy"
)

// TestUnprotectedKeyRefused: a private key others may read is refused by
// assets and connect, as ssh refuses one, naming the file, its mode and
// the fix (chmod 600; a logout, with the profile's --profile, if it may
// have been copied), and left as it is; nothing goes to the gate. The
// logout it names works: it ends the credential at the gate, says what
// it found, and deletes it.
func TestUnprotectedKeyRefused(t *testing.T) {
	g := startHostGate(t)
	key := g.enrol("alice")
	home := t.TempDir()
	prof := filepath.Join(t.TempDir(), "work profile")
	r := runOtgate(t, home, hostGatePassword+"\n", "login", "--profile", prof, "--user", "alice", "--code", code(t, key), "--password-stdin", "--pin", g.Fingerprint, g.Addr)
	if r.code != 0 {
		t.Fatalf("login: exit %d, stderr %q", r.code, r.stderr)
	}
	keyPath := filepath.Join(prof, client.KeyFile)
	if err := os.Chmod(keyPath, 0o644); err != nil {
		t.Fatal(err)
	}
	old := filepath.Join(t.TempDir(), "old")
	copyDir(t, prof, old) // 0600: to show the logout ended it at the gate
	before := len(g.events("alice"))

	refusal := "UNPROTECTED PRIVATE KEY: " + keyPath + " is accessible by other users (mode 0644): refused, as ssh refuses such a key; run chmod 600 " + keyPath +
		", and if anyone may have copied it, otgate logout --profile '" + prof + "' (it ends the credential at the gate) and log in again\n"
	r = runOtgate(t, home, "", "assets", "--profile", prof)
	if r.code != 1 || r.stderr != "otgate assets: "+refusal {
		t.Errorf("assets with a key of mode 0644: exit %d, stderr %q, want %q", r.code, r.stderr, "otgate assets: "+refusal)
	}
	r = runOtgate(t, home, "", "connect", "echo-1", "--protocol", "tcp", "--profile", prof)
	if r.code != 1 || r.stderr != "otgate connect: "+refusal {
		t.Errorf("connect with a key of mode 0644: exit %d, stderr %q, want %q", r.code, r.stderr, "otgate connect: "+refusal)
	}
	if st, err := os.Stat(keyPath); err != nil || st.Mode().Perm() != 0o644 {
		t.Errorf("the key after the refusals: %v, %v; want mode 0644 kept", st.Mode(), err)
	}
	if ev := g.events("alice"); len(ev) != before {
		t.Errorf("the refused commands reached the gate: %+v", ev[before:])
	}

	r = runOtgate(t, home, "", "logout", "--profile", prof)
	if want := "otgate logout: " + keyPath + " was open to other users (mode 0644): logging out ends it at the gate and deletes it here\n"; r.code != 0 || r.stderr != want ||
		r.stdout != "logged out of "+g.Addr+": every certificate of alice is invalid now\n" {
		t.Errorf("logout with a key of mode 0644: exit %d, stdout %q, stderr %q (want %q)", r.code, r.stdout, r.stderr, want)
	}
	if _, err := os.Stat(keyPath); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the key after the logout: %v, want it gone", err)
	}
	if !g.hasEvent("alice", proxy.EventLogout, "") {
		t.Errorf("no logout event of alice: %+v", g.events("alice"))
	}
	s, err := client.Open(old)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Tunnel(t.Context(), "echo-1", "tcp"); err == nil || !strings.Contains(err.Error(), "logged out or revoked") {
		t.Errorf("a copy of the key after the logout: %v, want it refused as logged out or revoked", err)
	}
}
