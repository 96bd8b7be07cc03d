//go:build linux

package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/otgate/otgate/client"
)

// undeletable makes the file at path impossible to delete until the test
// ends: immutable for root (chattr +i), its directory read-only for
// anyone else.
func undeletable(t *testing.T, path string) {
	t.Helper()
	if os.Geteuid() != 0 {
		dir := filepath.Dir(path)
		if err := os.Chmod(dir, 0o500); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Chmod(dir, 0o700) })
		return
	}
	if out, err := exec.Command("chattr", "+i", path).CombinedOutput(); err != nil {
		t.Fatalf("chattr +i %s: %v: %s", path, err, out)
	}
	t.Cleanup(func() { exec.Command("chattr", "-i", path).Run() })
}

// TestLogoutThatCannotDeleteSaysSo: a logout that cannot delete the
// local credential says so and where it is, with what the gate holds;
// it never says the credential was deleted.
func TestLogoutThatCannotDeleteSaysSo(t *testing.T) {
	g := startHostGate(t)
	keys := map[string]string{}
	home := t.TempDir()
	profile := map[string]string{}
	for _, u := range []string{"alice", "bob"} {
		k := g.enrol(u)
		profile[u] = filepath.Join(t.TempDir(), u)
		r := runOtgate(t, home, hostGatePassword+"\n", "login", "--profile", profile[u], "--user", u, "--code", code(t, k), "--password-stdin", "--pin", g.Fingerprint, g.Addr)
		if r.code != 0 {
			t.Fatalf("login of %s: exit %d, stderr %q", u, r.code, r.stderr)
		}
		keys[u] = filepath.Join(profile[u], client.KeyFile)
		undeletable(t, keys[u])
	}
	kept := func(u string) string {
		return "could not delete the local credential (remove " + keys[u] + ": "
	}

	// The gate is told, the key stays.
	said := map[string]string{}
	r := runOtgate(t, home, "", "logout", "--profile", profile["bob"])
	said["bob"] = r.stderr
	if want := "otgate logout: the gate invalidated every certificate of bob, but " + kept("bob"); r.code != 1 || !strings.HasPrefix(r.stderr, want) ||
		!strings.HasSuffix(r.stderr, "): delete the files in "+profile["bob"]+" by hand\n") {
		t.Errorf("logout of bob that cannot delete the key: exit %d, stderr %q, want it to start %q", r.code, r.stderr, want)
	}
	// Neither: the gate is down and the key stays.
	g.Server.Close()
	r = runOtgate(t, home, "", "logout", "--profile", profile["alice"])
	said["alice"] = r.stderr
	if want := "otgate logout: " + kept("alice"); r.code != 1 || !strings.HasPrefix(r.stderr, want) ||
		!strings.Contains(r.stderr, "): delete the files in "+profile["alice"]+" by hand; nor could the gate be told (connect to gate "+g.Addr+": ") ||
		!strings.HasSuffix(r.stderr, "; to end it sooner, ask the gate's administrator to run otgate admin user revoke alice\n") {
		t.Errorf("logout of alice with the gate down that cannot delete the key: exit %d, stderr %q, want it to start %q", r.code, r.stderr, want)
	}
	for u, k := range keys {
		if strings.Contains(said[u], "deleted") {
			t.Errorf("logout of %s says it deleted the credential: %q", u, said[u])
		}
		if _, err := os.Stat(k); err != nil {
			t.Errorf("%s's key: %v, want it there still", u, err)
		}
	}
}
