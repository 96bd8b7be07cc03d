//go:build !windows

package main

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/otgate/otgate/client"
	"github.com/otgate/otgate/services/proxy"
)

// TestLoginAssetsLogout runs `otgate login`, `otgate assets` and `otgate
// logout` as a script would against a whole gate on the host.
func TestLoginAssetsLogout(t *testing.T) {
	g := startHostGate(t)
	key := g.enrol("alice")
	g.enrol("bob")
	home := t.TempDir()
	dir := profileDir(home)

	// Not logged in yet.
	r := runOtgate(t, home, "", "assets")
	if want := "otgate assets: not logged in: no credential in " + dir + " (run otgate login <gate>)\n"; r.code != 1 || r.stderr != want {
		t.Errorf("assets before login: exit %d, stderr %q, want %q", r.code, r.stderr, want)
	}
	// A first login that nothing vouches for (no pin, no CA) sends no
	// credential from a script: it names the key to check and pass.
	r = runOtgate(t, home, hostGatePassword+"\n", "login", "--user", "alice", "--code", code(t, key), "--password-stdin", g.Addr)
	if want := "otgate login: first connection to " + g.Addr + ": nothing vouches for its key, SHA-256 " + g.Fingerprint +
		"; compare it with the gate's console (the proxy's \"gate key SHA-256\" line), then log in with --pin " + g.Fingerprint +
		" (or --ca FILE); no credential was sent\n"; r.code != 1 || r.stderr != want {
		t.Errorf("first login without a pin: exit %d, stderr %q, want %q", r.code, r.stderr, want)
	}
	// A pin the gate's key does not match: refused before the password
	// goes out; a malformed one names the flag.
	wrong := strings.Repeat("0", 64)
	r = runOtgate(t, home, hostGatePassword+"\n", "login", "--user", "alice", "--code", code(t, key), "--password-stdin", "--pin", wrong, g.Addr)
	if want := "otgate login: the key of gate " + g.Addr + " is not the pin given: pin " + wrong + ", the gate showed SHA-256 " + g.Fingerprint +
		"; no credential was sent: compare the pin with the gate's console (the proxy's \"gate key SHA-256\" line)\n"; r.code != 1 || r.stderr != want {
		t.Errorf("login with a wrong pin: exit %d, stderr %q", r.code, r.stderr)
	}
	r = runOtgate(t, home, hostGatePassword+"\n", "login", "--user", "alice", "--password-stdin", "--pin", "12:ab", g.Addr)
	if want := "otgate login: --pin: pin \"12:ab\": want the gate key's SHA-256, 64 hex digits\n"; r.code != 1 || r.stderr != want {
		t.Errorf("login with a malformed pin: exit %d, stderr %q, want %q", r.code, r.stderr, want)
	}
	if _, err := os.Stat(filepath.Join(dir, client.ProfileFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("refused logins left a profile: %v", err)
	}
	// A pipe is no terminal: the password must come with --password-stdin.
	r = runOtgate(t, home, hostGatePassword+"\n", "login", "--user", "alice", "--code", code(t, key), "--pin", g.Fingerprint, g.Addr)
	if r.code != 1 || !strings.Contains(r.stderr, "otgate login: standard input is not a terminal: use --password-stdin") {
		t.Errorf("login without --password-stdin: exit %d, stderr %q", r.code, r.stderr)
	}

	// An existing, too open directory is tightened.
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	before := time.Now().Truncate(time.Second)
	r = runOtgate(t, home, hostGatePassword+"\n", "login", "--user", "alice", "--code", code(t, key), "--password-stdin", "--pin", strings.ToUpper(g.Fingerprint), g.Addr)
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("login: exit %d, stderr %q", r.code, r.stderr)
	}
	if !regexp.MustCompile(`(?m)^pinned `+regexp.QuoteMeta(g.Addr)+`'s key SHA-256 `+g.Fingerprint+`: a change will be refused$`).MatchString(r.stdout) ||
		!regexp.MustCompile(`(?m)^logged in as alice until \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \S+$`).MatchString(r.stdout) {
		t.Errorf("login printed:\n%s", r.stdout)
	}

	// The credential is the user's alone.
	if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("profile directory: %v, %v; want mode 0700", st.Mode().Perm(), err)
	}
	for _, f := range []string{client.ProfileFile, client.KeyFile, client.CertFile} {
		if st, err := os.Stat(filepath.Join(dir, f)); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, %v; want mode 0600", f, st.Mode().Perm(), err)
		}
	}

	r = runOtgate(t, home, "", "assets")
	after := time.Now()
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("assets: exit %d, stderr %q", r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	if len(lines) != 4 {
		t.Fatalf("assets printed %d lines, want a heading, the table's header, echo-1 and hmi-2:\n%s", len(lines), r.stdout)
	}
	head := regexp.MustCompile(`^alice at ` + regexp.QuoteMeta(g.Addr) + `, certificate valid until (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)$`).FindStringSubmatch(lines[0])
	if head == nil {
		t.Errorf("assets heading %q", lines[0])
	} else {
		// The end of alice's longest grant now (4 h), before the gate's
		// longest certificate validity (8 h).
		inRange(t, "certificate end", head[1], before.Add(4*time.Hour), after.Add(4*time.Hour))
	}
	if f := strings.Fields(lines[1]); strings.Join(f, " ") != "ASSET PROTOCOL UNTIL RULE MODBUS/TCP SECURITY" {
		t.Errorf("table header %q", lines[1])
	}
	row := regexp.MustCompile(`^echo-1\s+tcp\s+(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\s+engineer-echo\s+-$`).FindStringSubmatch(lines[2])
	if row == nil {
		t.Errorf("asset row %q, want echo-1 over tcp by engineer-echo", lines[2])
	} else {
		// The grant's max_session (2 h), before the certificate's end.
		inRange(t, "echo-1 until", row[1], before.Add(2*time.Hour), after.Add(2*time.Hour))
	}
	row = regexp.MustCompile(`^hmi-2\s+tcp\s+(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\s+alice-hmi\s+-$`).FindStringSubmatch(lines[3])
	if row == nil {
		t.Errorf("asset row %q, want hmi-2 over tcp by alice-hmi", lines[3])
	} else {
		inRange(t, "hmi-2 until", row[1], before.Add(4*time.Hour), after.Add(4*time.Hour))
	}
	for _, not := range []string{"vnc", "bob"} {
		if strings.Contains(r.stdout, not) {
			t.Errorf("assets shows %q, which alice is not granted:\n%s", not, r.stdout)
		}
	}

	// The credential works for a tunnel; keep a copy of it to present
	// after the logout.
	old := filepath.Join(t.TempDir(), "old")
	copyDir(t, dir, old)
	oldSession, err := client.Open(old)
	if err != nil {
		t.Fatal(err)
	}
	c, _, err := oldSession.Tunnel(t.Context(), "echo-1", "tcp")
	if err != nil {
		t.Fatalf("tunnel before logout: %v", err)
	}
	echoed := make([]byte, 5)
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, echoed); err != nil || string(echoed) != "hello" {
		t.Fatalf("echo through the gate: %q, %v", echoed, err)
	}
	c.Close()

	r = runOtgate(t, home, "", "logout")
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("logout: exit %d, stderr %q", r.code, r.stderr)
	}
	if want := "logged out of " + g.Addr + ": every certificate of alice is invalid now\n"; r.stdout != want {
		t.Errorf("logout printed %q, want %q", r.stdout, want)
	}
	for _, f := range []string{client.ProfileFile, client.KeyFile, client.CertFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s after logout: %v, want it gone", f, err)
		}
	}
	r = runOtgate(t, home, "", "assets")
	if want := "otgate assets: not logged in: no credential in " + dir + " (run otgate login <gate>)\n"; r.code != 1 || r.stderr != want {
		t.Errorf("assets after logout: exit %d, stderr %q, want %q", r.code, r.stderr, want)
	}
	r = runOtgate(t, home, "", "logout")
	if want := "otgate logout: not logged in: no credential in " + dir + ", nothing to log out of\n"; r.code != 1 || r.stderr != want {
		t.Errorf("second logout: exit %d, stderr %q, want %q", r.code, r.stderr, want)
	}

	// The gate recorded the logout and refuses the old certificate.
	if !g.hasEvent("alice", proxy.EventLogout, "") {
		t.Errorf("no logout event of alice in the audit log: %+v", g.events("alice"))
	}
	_, _, err = oldSession.Tunnel(t.Context(), "echo-1", "tcp")
	var denied *client.DeniedError
	if !errors.As(err, &denied) || !strings.Contains(denied.Reply.Reason, "logged out or revoked") {
		t.Errorf("tunnel with the old certificate after logout: %v, want it refused as logged out or revoked", err)
	}
	if !g.hasEvent("alice", proxy.EventSessionRefused, "logged out or revoked") {
		t.Errorf("no refused-session event of alice in the audit log: %+v", g.events("alice"))
	}
	// otgate assets with the old credential says so, and what to do.
	r = runOtgate(t, home, "", "assets", "--profile", old)
	if r.code != 1 || !strings.HasPrefix(r.stderr, "otgate assets: the gate refused your credential (certificate refused: ") ||
		!strings.Contains(r.stderr, "(logged out or revoked)") ||
		!strings.HasSuffix(r.stderr, "): log in again with otgate login --profile "+old+" "+g.Addr+"\n") {
		t.Errorf("assets with the old certificate: exit %d, stderr %q", r.code, r.stderr)
	}
	// Logging out with it deletes it and says it was dead already.
	r = runOtgate(t, home, "", "logout", "--profile", old)
	if r.code != 0 || r.stderr != "" ||
		!strings.HasPrefix(r.stdout, "deleted the credential of alice for "+g.Addr+"; the gate had already stopped accepting it (certificate refused: ") {
		t.Errorf("logout with the old certificate: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(old, client.KeyFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("old key after its logout: %v, want it gone", err)
	}
}

// TestLogoutGateUnreachable: when the gate cannot be told, logout still
// deletes the credential and says how long the certificate stays valid
// and who can end it sooner.
func TestLogoutGateUnreachable(t *testing.T) {
	g := startHostGate(t)
	key := g.enrol("alice")
	home := t.TempDir()
	prof := filepath.Join(t.TempDir(), "work profile")
	r := runOtgate(t, home, hostGatePassword+"\n", "login", "--profile", prof, "--user", "alice", "--code", code(t, key), "--password-stdin", "--pin", g.Fingerprint, "otgate://"+g.Addr)
	if r.code != 0 {
		t.Fatalf("login: exit %d, stderr %q", r.code, r.stderr)
	}
	p, err := client.LoadProfile(prof)
	if err != nil {
		t.Fatal(err)
	}
	g.Server.Close()
	r = runOtgate(t, home, "", "logout", "--profile", prof)
	want := regexp.MustCompile(`^otgate logout: deleted the local credential, but could not tell the gate \(connect to gate ` + regexp.QuoteMeta(g.Addr) +
		`: [^\n]*\): the certificate stays valid at the gate until ` + regexp.QuoteMeta(p.Expiry.Local().Format("2006-01-02 15:04:05 MST")) +
		`; to end it sooner, ask the gate's administrator to run otgate admin user revoke alice\n$`)
	if r.code != 1 || !want.MatchString(r.stderr) {
		t.Errorf("logout with the gate down: exit %d, stderr %q, want it to match %s", r.code, r.stderr, want)
	}
	for _, f := range []string{client.ProfileFile, client.KeyFile, client.CertFile} {
		if _, err := os.Stat(filepath.Join(prof, f)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s after logout: %v, want it gone", f, err)
		}
	}
	// The hint names the profile directory it was given.
	r = runOtgate(t, home, "", "assets", "--profile", prof)
	if want := "otgate assets: not logged in: no credential in " + prof + " (run otgate login --profile '" + prof + "' <gate>)\n"; r.code != 1 || r.stderr != want {
		t.Errorf("assets after logout: exit %d, stderr %q, want %q", r.code, r.stderr, want)
	}
}

// inRange checks that the local time s (as the commands print it) is
// within [lo, hi] to the second.
func inRange(t *testing.T, what, s string, lo, hi time.Time) {
	t.Helper()
	got, err := time.ParseInLocation("2006-01-02 15:04:05", s, time.Local)
	if err != nil {
		t.Errorf("%s: %v", what, err)
		return
	}
	if got.Before(lo.Truncate(time.Second)) || got.After(hi) {
		t.Errorf("%s %s, want between %s and %s", what, s, lo.Format(time.DateTime), hi.Format(time.DateTime))
	}
}

// copyDir copies the regular files of src into a new directory dst.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.MkdirAll(dst, 0o700); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{
		"/home/al/.config/otgate": "/home/al/.config/otgate",
		"/tmp/work profile":       "'/tmp/work profile'",
		"it's":                    `'it'\''s'`,
		"":                        "''",
		"$HOME/x":                 "'$HOME/x'",
	} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %s, want %s", in, got, want)
		}
	}
}
