//go:build !windows

package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/otgate/otgate/client"
	"github.com/otgate/otgate/services/proxy"
	"github.com/otgate/otgate/services/proxy/auth/totp"
)

// TestLoginToAnotherGateEndsTheOldCredential: a profile holds one
// credential. A login to another gate (two gates on the host), or as
// another user, with the same (default) profile ends the credential it
// replaces at the old gate once the new one is stored, and says so; with
// the old gate out of reach it says, on standard error, that the old
// credential stays valid there and until when. A renewal (the same user
// at the same gate, under any of its addresses: the pin names the gate)
// ends nothing, and an expired credential is only replaced.
func TestLoginToAnotherGateEndsTheOldCredential(t *testing.T) {
	a, b := startHostGate(t), startHostGate(t)
	aliceA, aliceB, bobA := a.enrol("alice"), b.enrol("alice"), a.enrol("bob")
	home := t.TempDir()
	dir := profileDir(home)
	login := func(g *hostGate, user, code string, addr string) otgateRun {
		t.Helper()
		return runOtgate(t, home, hostGatePassword+"\n", "login", "--user", user, "--code", code, "--password-stdin", "--pin", g.Fingerprint, addr)
	}
	later := func(k totp.Key) string { // each code works once
		t.Helper()
		c, err := totp.Code(k.Secret, time.Now().Add(30*time.Second), k.Params)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	loggedIn := regexp.MustCompile(`^(pinned [^\n]*\n)?logged in as \w+ until \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \S+\n`)
	saved := func(name string) *client.Session {
		t.Helper()
		cp := filepath.Join(t.TempDir(), name)
		copyDir(t, dir, cp)
		s, err := client.Open(cp)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	tunnel := func(s *client.Session, asset string) error {
		t.Helper()
		c, _, err := s.Tunnel(t.Context(), asset, "tcp")
		if err == nil {
			c.Close()
		}
		return err
	}

	// An expired credential of a gate long gone is only replaced.
	end := time.Now().Add(-time.Hour).Truncate(time.Second)
	expiredProfile(t, dir, "127.0.0.1:1", end)
	r := login(a, "alice", code(t, aliceA), a.Addr)
	if want := "replaced the credential of alice for 127.0.0.1:1, which had expired at " + end.Local().Format("2006-01-02 15:04:05 MST") + "\n"; r.code != 0 || r.stderr != "" ||
		!loggedIn.MatchString(r.stdout) || !strings.HasSuffix(r.stdout, want) {
		t.Fatalf("login over an expired credential: exit %d, stdout %q, stderr %q, want it to end %q", r.code, r.stdout, r.stderr, want)
	}
	oldA := saved("alice-a")

	// Another gate: the old credential is ended there.
	r = login(b, "alice", code(t, aliceB), b.Addr)
	want := "replaced the credential of alice for " + a.Addr + " (a profile holds one credential: --profile DIR keeps one for each gate): logged out of " + a.Addr +
		", every certificate of alice there is invalid now\n"
	if r.code != 0 || r.stderr != "" || !loggedIn.MatchString(r.stdout) || !strings.HasSuffix(r.stdout, want) {
		t.Errorf("login to another gate: exit %d, stdout %q, stderr %q, want it to end %q", r.code, r.stdout, r.stderr, want)
	}
	if !a.hasEvent("alice", proxy.EventLogout, "") {
		t.Errorf("no logout of alice at the old gate: %+v", a.events("alice"))
	}
	if err := tunnel(oldA, "echo-1"); err == nil || !strings.Contains(err.Error(), "logged out or revoked") {
		t.Errorf("the replaced credential at the old gate: %v, want it refused as logged out or revoked", err)
	}
	if r := runOtgate(t, home, "", "assets"); r.code != 0 || !strings.HasPrefix(r.stdout, "alice at "+b.Addr+", ") {
		t.Errorf("assets with the new credential: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}

	// A renewal ends nothing: the new certificate works.
	r = login(b, "alice", later(aliceB), b.Addr)
	if r.code != 0 || r.stderr != "" || strings.Contains(r.stdout, "replaced") || !loggedIn.MatchString(r.stdout) {
		t.Errorf("a renewal: exit %d, stdout %q, stderr %q, want only the login said", r.code, r.stdout, r.stderr)
	}
	if b.hasEvent("alice", proxy.EventLogout, "") {
		t.Errorf("a renewal logged alice out: %+v", b.events("alice"))
	}
	if r := runOtgate(t, home, "", "assets"); r.code != 0 {
		t.Errorf("assets after the renewal: exit %d, stderr %q", r.code, r.stderr)
	}

	// The old gate out of reach: the login goes ahead and says the old
	// credential stays valid there, until when, and who can end it.
	p, err := client.LoadProfile(dir)
	if err != nil {
		t.Fatal(err)
	}
	oldB := saved("alice-b")
	b.Server.Close()
	r = login(a, "alice", later(aliceA), a.Addr)
	warn := regexp.MustCompile(`^otgate login: warning: replaced the credential of alice for ` + regexp.QuoteMeta(b.Addr) +
		` \(a profile holds one credential: --profile DIR keeps one for each gate\), but could not log out of ` + regexp.QuoteMeta(b.Addr) +
		` \(connect to gate ` + regexp.QuoteMeta(b.Addr) + `: [^\n]*\): it stays valid there until ` + regexp.QuoteMeta(p.Expiry.Local().Format("2006-01-02 15:04:05 MST")) +
		`; to end it sooner, ask the administrator of ` + regexp.QuoteMeta(b.Addr) + ` to run otgate admin user revoke alice\n$`)
	if r.code != 0 || !loggedIn.MatchString(r.stdout) || strings.Contains(r.stdout, "replaced") || !warn.MatchString(r.stderr) {
		t.Errorf("login with the old gate out of reach: exit %d, stdout %q, stderr %q, want the warning to match %s", r.code, r.stdout, r.stderr, warn)
	}
	if oldB.NotAfter().Before(time.Now()) {
		t.Errorf("the credential said to stay valid has expired (%v)", oldB.NotAfter())
	}

	// Another user at the same gate: the old user's credential is
	// ended there, the new user's is not.
	r = login(a, "bob", code(t, bobA), a.Addr)
	want = "replaced the credential of alice for " + a.Addr + " (a profile holds one credential: --profile DIR keeps one for each gate): logged out of " + a.Addr +
		", every certificate of alice there is invalid now\n"
	if r.code != 0 || r.stderr != "" || !strings.HasSuffix(r.stdout, want) {
		t.Errorf("login as another user: exit %d, stdout %q, stderr %q, want it to end %q", r.code, r.stdout, r.stderr, want)
	}
	if r := runOtgate(t, home, "", "assets"); r.code != 0 || !strings.HasPrefix(r.stdout, "bob at "+a.Addr+", ") {
		t.Errorf("assets as bob: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	// The same gate under another address is the same gate (its key):
	// a renewal, which leaves bob's first certificate valid.
	bob1 := saved("bob-1")
	_, port, _ := strings.Cut(a.Addr, ":")
	r = login(a, "bob", later(bobA), "localhost:"+port)
	if r.code != 0 || r.stderr != "" || strings.Contains(r.stdout, "replaced") {
		t.Errorf("bob at the same gate under another address: exit %d, stdout %q, stderr %q, want a renewal", r.code, r.stdout, r.stderr)
	}
	if err := tunnel(bob1, "hmi-2"); err != nil {
		t.Errorf("bob's first certificate after a renewal under another address: %v", err)
	}
}

// expiredProfile stores in dir a profile of alice for gate whose
// certificate expired at end.
func expiredProfile(t *testing.T, dir, gate string, end time.Time) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "alice"},
		NotBefore: end.Add(-8 * time.Hour), NotAfter: end}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{
		client.ProfileFile: []byte(`{"gate": "` + gate + `", "pin": "` + strings.Repeat("ab", 32) + `", "user": "alice"}`),
		client.KeyFile:     pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk}),
		client.CertFile:    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}
