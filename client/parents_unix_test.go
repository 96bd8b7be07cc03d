//go:build unix

package client

import (
	"crypto/ecdsa"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// TestProfileParentsAreChecked: a profile directory that another user
// could rename away (a directory above it writable by others, or owned
// by another user than the user or root) is refused as OpenSSH's
// StrictModes refuses such a path: by Open (connect, assets), by
// CheckProfile (a login, before anything goes to the gate) and by the
// login's store, naming the directory, its mode and the fix, and
// changing nothing. A sticky directory (/tmp) on the way passes.
func TestProfileParentsAreChecked(t *testing.T) {
	const modeMsg = "directory %[1]s, above the profile directory %[2]s, is writable by other users (mode %[3]s): refused, as ssh refuses such a path " +
		"(they could rename the profile directory away and put theirs in its place); run chmod go-w %[1]s, or give --profile a directory in a directory of your own, " +
		"and if anyone may have changed the credential, otgate logout (it ends the credential at the gate) and log in again"
	for _, c := range []struct {
		name  string
		mode  fs.FileMode // of top (with up, of top's parent)
		up    bool        // the directory two above the profile
		want  string      // "" passes; else modeMsg's mode
		sympl bool        // the profile is reached through a symbolic link into top
	}{
		{name: "0777", mode: 0o777, want: "0777"},
		{name: "0775 (group)", mode: 0o775, want: "0775"},
		{name: "0757 (others)", mode: 0o757, want: "0757"},
		{name: "grandparent 0777", mode: 0o777, up: true, want: "0777"},
		{name: "through a link", mode: 0o777, sympl: true, want: "0777"},
		{name: "1777 (sticky, as /tmp)", mode: 0o777 | fs.ModeSticky},
		{name: "0755", mode: 0o755},
		{name: "0711", mode: 0o711},
	} {
		t.Run(c.name, func(t *testing.T) {
			base := t.TempDir()
			top := filepath.Join(base, "top")
			parent := filepath.Join(top, "config")
			dir := filepath.Join(parent, "otgate")
			bad := top
			if !c.up {
				parent, dir = top, filepath.Join(top, "otgate")
			}
			if err := os.MkdirAll(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			given := dir
			if c.sympl {
				given = filepath.Join(base, "link")
				if err := os.Symlink(dir, given); err != nil {
					t.Fatal(err)
				}
			}
			cert := selfSigned(t, "alice")
			if err := storeLogin(given, &Profile{Gate: "g:1", Pin: testPin, User: "alice"}, cert.PrivateKey.(*ecdsa.PrivateKey), cert.Certificate, nil); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(top, c.mode); err != nil {
				t.Fatal(err)
			}
			fresh := filepath.Join(parent, "new") // a first login's directory
			if c.want == "" {
				if _, err := Open(given); err != nil {
					t.Errorf("Open below a directory of mode %v: %v", c.mode, err)
				}
				if err := CheckProfile(fresh); err != nil {
					t.Errorf("CheckProfile below a directory of mode %v: %v", c.mode, err)
				}
				return
			}
			want := fmt.Sprintf(modeMsg, bad, given, c.want)
			var ue *UnprotectedError
			if _, err := Open(given); !errors.As(err, &ue) || err.Error() != want {
				t.Errorf("Open: %v\nwant %s", err, want)
			}
			if err := CheckProfile(given); err == nil || err.Error() != want {
				t.Errorf("CheckProfile: %v\nwant %s", err, want)
			}
			if p := StoredPin(given, "g:1"); p != "" {
				t.Errorf("StoredPin below a directory others may write in: %q", p)
			}
			wantFresh := fmt.Sprintf(modeMsg, bad, fresh, c.want)
			if err := CheckProfile(fresh); err == nil || err.Error() != wantFresh {
				t.Errorf("CheckProfile of a first login's directory: %v\nwant %s", err, wantFresh)
			}
			if err := storeLogin(fresh, &Profile{Gate: "g:1", Pin: testPin, User: "alice"}, cert.PrivateKey.(*ecdsa.PrivateKey), cert.Certificate, nil); err == nil || err.Error() != wantFresh {
				t.Errorf("storeLogin: %v\nwant %s", err, wantFresh)
			}
			// Nothing changed: the mode stays, no directory was made.
			if st, err := os.Stat(top); err != nil || st.Mode()&(fs.ModePerm|fs.ModeSticky) != c.mode {
				t.Errorf("%s after the refusal: %v, %v; want mode %v kept", top, st.Mode(), err, c.mode)
			}
			if _, err := os.Stat(fresh); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%s was made: %v", fresh, err)
			}
			// Logout still opens it, to end the credential at the gate.
			if s, err := OpenToRevoke(given); err != nil || s.Profile.Gate != "g:1" {
				t.Errorf("OpenToRevoke: %v", err)
			}
		})
	}
}

// TestProfileParentOfAnotherUser: a directory above the profile that
// belongs to another user (not root) is refused whatever its mode; one
// of root, such as /home, passes.
func TestProfileParentOfAnotherUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give a directory to another user")
	}
	const nobody = 65534
	top := filepath.Join(t.TempDir(), "top")
	dir := filepath.Join(top, "otgate")
	cert := selfSigned(t, "alice")
	if err := storeLogin(dir, &Profile{Gate: "g:1", Pin: testPin, User: "alice"}, cert.PrivateKey.(*ecdsa.PrivateKey), cert.Certificate, nil); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(top, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir); err != nil {
		t.Fatalf("Open below a directory of root, 0755: %v", err)
	}
	if err := os.Chown(top, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	want := "directory " + top + ", above the profile directory " + dir + ", belongs to uid 65534, not to you (uid 0) nor root: refused, as ssh refuses such a path " +
		"(its owner could put another profile in place of yours); give --profile a directory in a directory of your own"
	if _, err := Open(dir); err == nil || err.Error() != want {
		t.Errorf("Open: %v\nwant %s", err, want)
	}
	if err := CheckProfile(dir); err == nil || err.Error() != want {
		t.Errorf("CheckProfile: %v\nwant %s", err, want)
	}
}
