//go:build unix

package client

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A damaged or hand-edited gate.json (a pin cut short or with a typo, a
// gate without its port) is refused naming the file, the field and what
// to do, rather than read: a bad pin made every command warn that the
// gate's key had changed and someone might be intercepting, a gate
// without a port failed at each connection.
func TestDamagedProfileIsRefusedNamingTheField(t *testing.T) {
	pin := strings.Repeat("ab", 32)
	for _, c := range []struct{ json, want string }{
		{`{"gate": "gate.plant:8443", "pin": "` + pin[:63] + `"}`, `pin "` + pin[:63] + `" is not a gate key's SHA-256 (64 lowercase hex digits)`},
		{`{"gate": "gate.plant:8443", "pin": "` + strings.ToUpper(pin) + `"}`, `pin "` + strings.ToUpper(pin) + `" is not a gate key's SHA-256 (64 lowercase hex digits)`},
		{`{"gate": "gate.plant", "pin": "` + pin + `"}`, `gate "gate.plant" is not host:port`},
		{`{"gate": "gate.plant:0", "pin": "` + pin + `"}`, `gate "gate.plant:0" is not host:port`},
		{`{"pin": "` + pin + `"}`, `gate "" is not host:port`},
		{`{"gate": "gate.plant:8443"}`, `pin "" is not a gate key's SHA-256 (64 lowercase hex digits)`},
	} {
		dir := newProfile(t)
		path := filepath.Join(dir, ProfileFile)
		if err := os.WriteFile(path, []byte(c.json), 0o600); err != nil {
			t.Fatal(err)
		}
		want := path + ": " + c.want + ": the file is damaged: log in again"
		if _, err := Open(dir); err == nil || err.Error() != want {
			t.Errorf("Open with %s: %v, want %q", c.json, err, want)
		}
	}
	// As login writes it, it is read.
	dir := newProfile(t)
	if err := os.WriteFile(filepath.Join(dir, ProfileFile), []byte(`{"gate": "[fd00::1]:8443", "pin": "`+pin+`"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir); err != nil {
		t.Errorf("Open of a good profile: %v", err)
	}
}
