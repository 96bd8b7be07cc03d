//go:build !windows

package main

import (
	"strings"
	"testing"
)

// --password-stdin reads the password from the first line of standard
// input, as its help says: without --user, the password is not taken for
// the user name (and a misleading "read password: EOF" given); the error
// says to give --user, and nothing goes to the gate.
func TestLoginPasswordStdinNeedsUser(t *testing.T) {
	home := t.TempDir()
	r := runOtgate(t, home, "correct horse battery\n", "login", "--password-stdin", "--code", "123456", "--pin", strings.Repeat("0", 64), "127.0.0.1:1")
	if want := "otgate login: --password-stdin reads the password from standard input: give the user with --user\n"; r.code != 2 || r.stderr != want {
		t.Errorf("login --password-stdin without --user: exit %d, stderr %q, want %q", r.code, r.stderr, want)
	}
	if strings.Contains(r.stdout, "user:") {
		t.Errorf("login --password-stdin asked for the user on standard input: %q", r.stdout)
	}
}
