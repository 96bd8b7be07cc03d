//go:build !windows

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
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

// TestLoginRefusesAProfileOthersCouldRenameAway: a directory above the
// profile that others may write in lets them rename the profile away and
// put theirs in its place: login refuses it before anything goes to the
// gate, and makes nothing; assets refuses a stored profile below one,
// naming the directory and the fix; logout ends that credential at the
// gate all the same, and says what it found.
func TestLoginRefusesAProfileOthersCouldRenameAway(t *testing.T) {
	g := startHostGate(t)
	key := g.enrol("alice")
	home := t.TempDir()
	shared := filepath.Join(t.TempDir(), "shared")
	if err := os.Mkdir(shared, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(shared, 0o777); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(shared, "otgate")
	r := runOtgate(t, home, hostGatePassword+"\n", "login", "--profile", dir, "--user", "alice", "--code", code(t, key), "--password-stdin", "--pin", g.Fingerprint, g.Addr)
	refusal := fmt.Sprintf("directory %[1]s, above the profile directory %[2]s, is writable by other users (mode 0777): refused, as ssh refuses such a path "+
		"(they could rename the profile directory away and put theirs in its place); run chmod go-w %[1]s, or give --profile a directory in a directory of your own, "+
		"and if anyone may have changed the credential, %[3]s (it ends the credential at the gate) and log in again", shared, dir, "otgate logout --profile "+dir)
	if want := "otgate login: " + strings.Replace(refusal, "otgate logout --profile "+dir, "otgate logout", 1) + "\n"; r.code != 1 || r.stderr != want {
		t.Errorf("login below a directory of mode 0777: exit %d, stderr %q\nwant %q", r.code, r.stderr, want)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the refused login made %s (%v)", dir, err)
	}
	if g.hasEvent("alice", proxy.EventCertIssued, "") {
		t.Fatalf("the gate issued a certificate to a refused login: %+v", g.events("alice"))
	}

	// A profile stored while the directory was closed, then opened.
	if err := os.Chmod(shared, 0o755); err != nil {
		t.Fatal(err)
	}
	if r := runOtgate(t, home, hostGatePassword+"\n", "login", "--profile", dir, "--user", "alice", "--code", code(t, key), "--password-stdin", "--pin", g.Fingerprint, g.Addr); r.code != 0 {
		t.Fatalf("login below a directory of mode 0755: exit %d, stderr %q", r.code, r.stderr)
	}
	if err := os.Chmod(shared, 0o777); err != nil {
		t.Fatal(err)
	}
	if r := runOtgate(t, home, "", "assets", "--profile", dir); r.code != 1 || r.stderr != "otgate assets: "+refusal+"\n" {
		t.Errorf("assets below a directory of mode 0777: exit %d, stderr %q\nwant %q", r.code, r.stderr, "otgate assets: "+refusal+"\n")
	}
	r = runOtgate(t, home, "", "logout", "--profile", dir)
	if want := fmt.Sprintf("otgate logout: %s, above the profile directory %s, was writable by other users (mode 0777): logging out ends it at the gate and deletes it here\n", shared, dir); r.code != 0 || !strings.HasPrefix(r.stderr, want) {
		t.Errorf("logout below a directory of mode 0777: exit %d, stderr %q\nwant it to start %q", r.code, r.stderr, want)
	}
	if !g.hasEvent("alice", proxy.EventLogout, "") {
		t.Errorf("the gate has no logout of alice: %+v", g.events("alice"))
	}
}
