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

// TestOpenRefusesUnprotectedProfile: a credential whose directory or
// files another user owns, or may read (the key, the directory) or change
// (any of them), is refused as ssh refuses an unprotected private key:
// with an error naming the file, its mode and the fix, and nothing
// changed. OpenToRevoke (logout) still opens it.
func TestOpenRefusesUnprotectedProfile(t *testing.T) {
	for _, c := range []struct {
		file string // "" for the directory
		mode fs.FileMode
		want string // %[1]s the path, %[2]s the logout command
	}{
		{KeyFile, 0o640, "UNPROTECTED PRIVATE KEY: %[1]s is accessible by other users (mode 0640): refused, as ssh refuses such a key; run chmod 600 %[1]s, and if anyone may have copied it, %[2]s (it ends the credential at the gate) and log in again"},
		{KeyFile, 0o604, "UNPROTECTED PRIVATE KEY: %[1]s is accessible by other users (mode 0604): refused, as ssh refuses such a key; run chmod 600 %[1]s, and if anyone may have copied it, %[2]s (it ends the credential at the gate) and log in again"},
		{KeyFile, 0o610, "UNPROTECTED PRIVATE KEY: %[1]s is accessible by other users (mode 0610): refused, as ssh refuses such a key; run chmod 600 %[1]s, and if anyone may have copied it, %[2]s (it ends the credential at the gate) and log in again"},
		{"", 0o750, "profile directory %[1]s is open to other users (mode 0750): refused; run chmod 700 %[1]s, and if anyone may have copied or changed the credential in it, %[2]s (it ends the credential at the gate) and log in again"},
		{"", 0o703, "profile directory %[1]s is open to other users (mode 0703): refused; run chmod 700 %[1]s, and if anyone may have copied or changed the credential in it, %[2]s (it ends the credential at the gate) and log in again"},
		{ProfileFile, 0o620, "%[1]s is writable by other users (mode 0620): refused (the gate, pin and certificate of a profile must be yours alone); run chmod 600 %[1]s, and if anyone may have changed it, log in again"},
		{CertFile, 0o602, "%[1]s is writable by other users (mode 0602): refused (the gate, pin and certificate of a profile must be yours alone); run chmod 600 %[1]s, and if anyone may have changed it, log in again"},
	} {
		dir := newProfile(t)
		path := filepath.Join(dir, c.file)
		if err := os.Chmod(path, c.mode); err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf(c.want, path, "otgate logout")
		s, err := Open(dir)
		var ue *UnprotectedError
		if !errors.As(err, &ue) || err.Error() != want {
			t.Errorf("Open with %s of mode %04o: %v, %v; want %q", path, c.mode, s, err, want)
			continue
		}
		ue.LogoutCmd = "otgate logout --profile x"
		if got, want := err.Error(), fmt.Sprintf(c.want, path, "otgate logout --profile x"); got != want {
			t.Errorf("with LogoutCmd: %q, want %q", got, want)
		}
		if st, err := os.Stat(path); err != nil || st.Mode().Perm() != c.mode {
			t.Errorf("%s after the refusal: %v, %v; want mode %04o kept", path, st.Mode(), err, c.mode)
		}
		if s, err := OpenToRevoke(dir); err != nil || s.Profile.Gate != "g:1" {
			t.Errorf("OpenToRevoke with %s of mode %04o: %v", path, c.mode, err)
		}
	}
	// Readable by others, the certificate and the profile are only what
	// the gate and the user's tools may see anyway; a directory others
	// may only enter gives nothing away either.
	for _, c := range []struct {
		file string
		mode fs.FileMode
	}{{CertFile, 0o644}, {ProfileFile, 0o644}, {"", 0o711}} {
		dir := newProfile(t)
		if err := os.Chmod(filepath.Join(dir, c.file), c.mode); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(dir); err != nil {
			t.Errorf("Open with %s of mode %04o: %v", c.file, c.mode, err)
		}
	}
}

// TestOpenRefusesAnotherUsersProfile: a directory or file owned by
// another user is refused whatever its mode: its owner may read it and
// change it back. Login refuses such a directory too, before anything
// goes to the gate.
func TestOpenRefusesAnotherUsersProfile(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give a file to another user")
	}
	const nobody = 65534
	for _, f := range []string{"", KeyFile, CertFile, ProfileFile} {
		dir := newProfile(t)
		path := filepath.Join(dir, f)
		if err := os.Chown(path, nobody, nobody); err != nil {
			t.Fatal(err)
		}
		want := path + " belongs to uid 65534, not to you (uid 0): refused; log in again to replace it"
		if f == "" {
			want = "profile directory " + dir + " belongs to uid 65534, not to you (uid 0): refused; give a directory of your own"
			if err := CheckProfile(dir); err == nil || err.Error() != want {
				t.Errorf("CheckProfile (login) of a directory of uid 65534: %v, want %q", err, want)
			}
		}
		if _, err := Open(dir); err == nil || err.Error() != want {
			t.Errorf("Open with %s of uid 65534: %v, want %q", path, err, want)
		}
	}
}

// TestLoginRefusesAChangeableStoredPin: a stored profile others may
// write in holds a pin a login would enforce: CheckProfile refuses it
// and StoredPin gives none.
func TestLoginRefusesAChangeableStoredPin(t *testing.T) {
	dir := newProfile(t)
	path := filepath.Join(dir, ProfileFile)
	if StoredPin(dir, "g:1") != testPin {
		t.Fatal("no stored pin for g:1")
	}
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	want := path + " is writable by other users (mode 0666): refused (the gate, pin and certificate of a profile must be yours alone); run chmod 600 " + path + ", and if anyone may have changed it, log in again"
	if err := CheckProfile(dir); err == nil || err.Error() != want {
		t.Errorf("CheckProfile: %v, want %q", err, want)
	}
	if p := StoredPin(dir, "g:1"); p != "" {
		t.Errorf("StoredPin from a profile others may change: %q", p)
	}
}

// newProfile is a profile directory as a login leaves it.
func newProfile(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "otgate")
	cert := selfSigned(t, "alice")
	if err := storeLogin(dir, &Profile{Gate: "g:1", Pin: testPin, User: "alice"}, cert.PrivateKey.(*ecdsa.PrivateKey), cert.Certificate, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir); err != nil {
		t.Fatalf("Open of a profile as a login leaves it: %v", err)
	}
	return dir
}
