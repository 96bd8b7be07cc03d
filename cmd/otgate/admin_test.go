//go:build !windows

package main

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/otgate/otgate/services/proxy/auth"
	"github.com/otgate/otgate/services/proxy/auth/authtest"
	"github.com/otgate/otgate/services/proxy/auth/qrterm"
	"github.com/otgate/otgate/services/proxy/auth/totp"
)

// admin runs `otgate admin user ...` with stdin and returns stdout.
func admin(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := runAdmin(append([]string{"user"}, args...), adminIO{in: strings.NewReader(stdin), out: &out, errOut: &errOut})
	t.Logf("otgate admin user %s\n%s%s", strings.Join(args, " "), out.String(), errOut.String())
	return out.String(), err
}

// TestAdminUserLifecycle drives the admin commands against a real identity
// service on swtpm, and logs in with a code computed by oathtool from the
// printed secret.
func TestAdminUserLifecycle(t *testing.T) {
	id := authtest.StartIdentity(t)
	state := filepath.Join(t.TempDir(), "proxy")
	common := []string{"--direct", "-identity", id.Socket, "-state", state, "-audit", filepath.Join(t.TempDir(), "audit")}
	run := func(stdin string, args ...string) string {
		t.Helper()
		out, err := admin(t, stdin, append(args, common...)...)
		if err != nil {
			t.Fatalf("admin user %v: %v", args, err)
		}
		return out
	}

	out := run("correct horse battery\n", "add", "alice", "--roles", "engineer,vendor", "--password-stdin")
	uri := regexp.MustCompile(`(?m)^otpauth://\S+$`).FindString(out)
	if uri == "" {
		t.Fatal("no otpauth URI printed")
	}
	key, err := totp.ParseURI(uri)
	if err != nil {
		t.Fatal(err)
	}
	if key.Account != "alice" || key.Issuer != auth.IssuerForSite(authtest.Site) {
		t.Errorf("URI names %q / %q", key.Issuer, key.Account)
	}
	// The printed QR code is the URI's (qrterm's tests decode it with an
	// independent decoder).
	var qrLines []string
	for _, l := range strings.Split(out, "\n") {
		if l != "" && strings.Trim(l, " █▀▄") == "" {
			qrLines = append(qrLines, l)
		}
	}
	printed, err := qrterm.Parse(strings.Join(qrLines, "\n")+"\n", false)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := qrterm.Matrix(uri)
	for y := range want {
		for x := range want[y] {
			if printed[y][x] != want[y][x] {
				t.Fatalf("printed QR differs from the URI's at (%d,%d)", x, y)
			}
		}
	}
	// The printed secret, grouped by four, is the URI's.
	sec := regexp.MustCompile(`secret: ([A-Z2-7 ]+) \(`).FindStringSubmatch(out)
	if sec == nil || strings.ReplaceAll(sec[1], " ", "") != totp.EncodeSecret(key.Secret) {
		t.Errorf("printed secret %q", sec)
	}

	// Bad input changes nothing.
	for _, args := range [][]string{
		{"add", "alice", "--password-stdin"}, // exists
		{"add", "Bob", "--password-stdin"},   // bad name
		{"add", "bob", "--password-stdin"},   // short password below
		{"unlock", "nobody"},                 // unknown
		{"frobnicate", "alice"},              // unknown subcommand
		{"list", "alice"},                    // list takes no name
		{"add", "--password-stdin"},          // no name
	} {
		if _, err := admin(t, "short\n", append(args, common...)...); err == nil {
			t.Errorf("admin user %v accepted", args)
		}
	}
	// Not a terminal and no --password-stdin.
	if _, err := admin(t, "", append([]string{"add", "bob"}, common...)...); err == nil || !strings.Contains(err.Error(), "--password-stdin") {
		t.Errorf("add without a terminal: %v", err)
	}

	if out := run("", "list"); !regexp.MustCompile(`alice\s+engineer,vendor\s+pending`).MatchString(out) {
		t.Errorf("list after add:\n%s", out)
	}

	// Log in with the printed secret, codes by oathtool.
	login := func(wantReason auth.Reason) {
		t.Helper()
		st, err := auth.Open(auth.Config{Dir: state, Sealer: id.Client})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		bin, err := exec.LookPath("oathtool")
		if err != nil {
			t.Skip("oathtool not installed")
		}
		code, err := exec.Command(bin, "--totp", "-b", totp.EncodeSecret(key.Secret)).Output()
		if err != nil {
			t.Fatal(err)
		}
		_, err = st.Authenticate("alice", []byte("correct horse battery"), strings.TrimSpace(string(code)), netip.MustParseAddr("192.0.2.7"))
		if got := auth.ReasonOf(err); got != wantReason || (wantReason == "" && err != nil) {
			t.Fatalf("login: %v, want reason %q", err, wantReason)
		}
	}
	login("")
	if out := run("", "list"); !regexp.MustCompile(`alice\s+engineer,vendor\s+active`).MatchString(out) {
		t.Errorf("list after login:\n%s", out)
	}

	run("", "disable", "alice")
	if out := run("", "list"); !strings.Contains(out, "disabled") {
		t.Errorf("list after disable:\n%s", out)
	}
	run("", "enable", "alice")
	if out := run("", "revoke", "alice"); !strings.Contains(out, "generation now") {
		t.Errorf("revoke: %s", out)
	}
	// alice is not locked: the unlock says so and changes nothing.
	if _, err := admin(t, "", append([]string{"unlock", "alice"}, common...)...); !errors.Is(err, auth.ErrNotLocked) {
		t.Errorf("unlock of alice, who is not locked: %v, want ErrNotLocked", err)
	}
	run("", "reset-totp", "alice")
	if out := run("", "list"); !regexp.MustCompile(`alice\s+engineer,vendor\s+pending`).MatchString(out) {
		t.Errorf("list after reset-totp:\n%s", out)
	}
	login(auth.ReasonBadCode) // the old authenticator no longer works
	run("", "remove", "alice")
	if out := run("", "list"); strings.Contains(out, "alice") {
		t.Errorf("list after remove:\n%s", out)
	}
}

// TestAdminRefusesBusyStore: while the proxy has the store open, the CLI
// does not touch it.
func TestAdminRefusesBusyStore(t *testing.T) {
	id := authtest.StartIdentity(t)
	state := filepath.Join(t.TempDir(), "proxy")
	st, err := auth.Open(auth.Config{Dir: state, Sealer: id.Client})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	_, err = admin(t, "", "list", "--direct", "-identity", id.Socket, "-state", state)
	if !errors.Is(err, auth.ErrStoreBusy) {
		t.Errorf("list while the store is open elsewhere: %v, want ErrStoreBusy", err)
	}
}

// TestAdminRefusesWrongService: a uid the identity service knows as
// another service never reaches (or creates) the proxy's store.
func TestAdminRefusesWrongService(t *testing.T) {
	id := authtest.StartIdentityAs(t, "admin")
	state := filepath.Join(t.TempDir(), "proxy")
	_, err := admin(t, "", "list", "--direct", "-identity", id.Socket, "-state", state)
	if err == nil || !strings.Contains(err.Error(), `as service "admin"`) {
		t.Errorf("list as service admin: %v", err)
	}
	if _, serr := os.Stat(state); !os.IsNotExist(serr) {
		t.Errorf("store directory created anyway: %v", serr)
	}
}

// TestAdminRefusesSecretFilesOthersMayRead: a --totp-secret-file or
// --password-file that group or others may read is refused (as ssh
// refuses such a private key), naming the flag, the file, its mode and
// the fix, before anything is opened: the secret in it may have been
// read, and a gate must not enrol an authenticator others may hold.
func TestAdminRefusesSecretFilesOthersMayRead(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "proxy")
	secret, err := totp.GenerateSecret(0)
	if err != nil {
		t.Fatal(err)
	}
	sf, pf := filepath.Join(dir, "alice.totp"), filepath.Join(dir, "alice.password")
	if err := os.WriteFile(sf, []byte(totp.EncodeSecret(secret)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pf, []byte("correct horse battery\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	common := []string{"--direct", "-identity", filepath.Join(dir, "no-identity.sock"), "-state", state}
	for _, c := range []struct {
		flag, file string
		mode       os.FileMode
	}{
		{"--totp-secret-file", sf, 0o644},
		{"--totp-secret-file", sf, 0o640},
		{"--password-file", pf, 0o604},
	} {
		if err := os.Chmod(c.file, c.mode); err != nil {
			t.Fatal(err)
		}
		_, err := admin(t, "", append([]string{"add", "alice", "--totp-secret-file", sf, "--password-file", pf}, common...)...)
		want := fmt.Sprintf("%s %s: mode %04o", c.flag, c.file, c.mode)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "chmod 600") {
			t.Errorf("%s of mode %04o: %v, want an error containing %q and the fix", c.flag, c.mode, err, want)
		}
		if err := os.Chmod(c.file, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Errorf("store directory touched: %v", err)
	}
	// 0600 files pass the check (and fail only at the missing identity service).
	_, err = admin(t, "", append([]string{"add", "alice", "--totp-secret-file", sf, "--password-file", pf}, common...)...)
	if err == nil || strings.Contains(err.Error(), "chmod") {
		t.Errorf("add with private files and no identity service: %v, want the identity service's error", err)
	}
}
