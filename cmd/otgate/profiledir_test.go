//go:build !windows

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/otgate/otgate/services/proxy"
)

// TestLoginRefusesASharedProfileDirectory: a profile directory that
// other users may write in (a sticky one like /tmp, a group-writable one)
// is refused before anything goes to the gate, and left as it is: others
// may have put a profile in it pinning their own key, and tightening
// /tmp would break it for everyone else. (A directory only too open to
// read is tightened: TestLoginAssetsLogout.)
func TestLoginRefusesASharedProfileDirectory(t *testing.T) {
	g := startHostGate(t)
	key := g.enrol("alice")
	home := t.TempDir()
	for _, c := range []struct {
		mode  os.FileMode
		octal string
	}{{os.ModeSticky | 0o777, "1777"}, {0o775, "0775"}} {
		dir := filepath.Join(t.TempDir(), "shared")
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, c.mode); err != nil {
			t.Fatal(err)
		}
		r := runOtgate(t, home, hostGatePassword+"\n", "login", "--profile", dir, "--user", "alice", "--code", code(t, key), "--password-stdin", "--pin", g.Fingerprint, g.Addr)
		want := fmt.Sprintf("otgate login: profile directory %s is writable by other users (mode %s): give a directory of your own (it is left as it is)\n", dir, c.octal)
		if r.code != 1 || r.stderr != want {
			t.Errorf("login into a directory of mode %s: exit %d, stderr %q, want %q", c.octal, r.code, r.stderr, want)
		}
		st, err := os.Stat(dir)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode()&(os.ModeSticky|os.ModePerm) != c.mode {
			t.Errorf("the directory's mode is %v now, want %v kept", st.Mode(), c.mode)
		}
		if ents, err := os.ReadDir(dir); err != nil || len(ents) != 0 {
			t.Errorf("the refused login left %v in the directory (%v)", ents, err)
		}
	}
	if g.hasEvent("alice", proxy.EventCertIssued, "") {
		t.Errorf("the gate issued a certificate to a refused login: %+v", g.events("alice"))
	}
}
