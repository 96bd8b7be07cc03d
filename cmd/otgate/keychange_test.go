//go:build !windows

package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/otgate/otgate/client"
	"github.com/otgate/otgate/services/proxy/auth/totp"
)

// TestChangedGateKeyWarns: a gate showing another key than the one
// pinned at login (the pin stored is another key's, as after the gate's
// identity was reset, or with someone in between) is refused by every
// command with a warning that names both keys, says nothing was sent and
// how to pin the new key once it is checked; a login never re-pins by
// itself, and one with the checked key as --pin says what it replaced.
func TestChangedGateKeyWarns(t *testing.T) {
	g := startHostGate(t)
	key := g.enrol("alice")
	home := t.TempDir()
	dir := profileDir(home)
	r := runOtgate(t, home, hostGatePassword+"\n", "login", "--user", "alice", "--code", code(t, key), "--password-stdin", "--pin", g.Fingerprint, g.Addr)
	if r.code != 0 {
		t.Fatalf("login: exit %d, stderr %q", r.code, r.stderr)
	}
	pinned := strings.Repeat("5a", 32)
	path := filepath.Join(dir, client.ProfileFile)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var p map[string]any
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	p["pin"] = pinned
	if b, err = json.Marshal(p); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}

	warning := "WARNING: gate certificate changed: the key of gate " + g.Addr + " is not the one pinned (SHA-256 " + pinned + "), it showed SHA-256 " + g.Fingerprint +
		": someone may be intercepting the connection, or the gate's identity was reset; nothing was sent to it. " +
		"Ask the gate's administrator for the key its console shows (the proxy's \"gate key SHA-256\" line); only if it is " + g.Fingerprint +
		", log in again with --pin " + g.Fingerprint + "\n"
	r = runOtgate(t, home, "", "assets")
	if want := "otgate assets: " + warning; r.code != 1 || r.stderr != want {
		t.Errorf("assets with a changed gate key: exit %d, stderr %q, want %q", r.code, r.stderr, want)
	}
	next, err := totp.Code(key.Secret, time.Now().Add(30*time.Second), key.Params)
	if err != nil {
		t.Fatal(err)
	}
	r = runOtgate(t, home, hostGatePassword+"\n", "login", "--user", "alice", "--code", next, "--password-stdin", g.Addr)
	if want := "otgate login: " + warning; r.code != 1 || r.stderr != want {
		t.Errorf("login with a changed gate key: exit %d, stderr %q, want %q", r.code, r.stderr, want)
	}
	if got := client.StoredPin(dir, g.Addr); got != pinned {
		t.Fatalf("the refused login stored pin %s, want %s kept", got, pinned)
	}
	r = runOtgate(t, home, hostGatePassword+"\n", "login", "--user", "alice", "--code", next, "--password-stdin", "--pin", g.Fingerprint, g.Addr)
	if want := "pinned " + g.Addr + "'s key SHA-256 " + g.Fingerprint + " (replacing " + pinned + ")\n"; r.code != 0 || !strings.HasPrefix(r.stdout, want) {
		t.Errorf("login with the new key checked: exit %d, stdout %q, want it to start %q", r.code, r.stdout, want)
	}
}
