package client

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// siteCA is an enterprise CA that issues gates' device certificates
// (otgate identity csr / install-cert) and other servers' too.
type siteCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string // PEM
}

func newSiteCA(t *testing.T) *siteCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "plant-a enterprise CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	file := filepath.Join(t.TempDir(), "plant-a-ca.pem")
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return &siteCA{cert: cert, key: key, file: file}
}

// issue is an end-entity server certificate of the CA naming uris (a
// gate's device certificate names spiffe://SITE/gate/SERIAL) and dns.
func (ca *siteCA) issue(t *testing.T, uris []string, dns ...string) *tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "server"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true, DNSNames: dns}
	for _, s := range uris {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, u)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

const (
	gate1ID = "spiffe://plant-a.example/gate/gw-0001"
	gate2ID = "spiffe://plant-a.example/gate/gw-0002"
)

// TestCAProfileIsBoundToTheGateIdentity: a CA vouches for every
// certificate it issued, so a login with --ca binds the profile to the
// gate identity its certificate names (spiffe://SITE/gate/SERIAL), given
// by the user or confirmed at the first login, and every later login and
// connection refuses another gate of the same CA at that address, with
// an error naming both identities and how to trust the new one on
// purpose. Real TLS, two gate certificates from one CA; the count of
// logins the gate received says whether credentials went out.
func TestCAProfileIsBoundToTheGateIdentity(t *testing.T) {
	ca := newSiteCA(t)
	gate1, gate2 := ca.issue(t, []string{gate1ID}), ca.issue(t, []string{gate2ID, "urn:otgate:dev-mode-software-key"})
	var shown atomic.Pointer[tls.Certificate]
	shown.Store(gate1)
	addr, logins := loginGateShowing(t, &shown)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir := filepath.Join(t.TempDir(), "otgate")
	login := func(gateID string) (*LoginResult, error) {
		return Login(ctx, LoginOptions{Gate: addr, User: "alice", Password: "pw", Code: "123456", CAFile: ca.file, GateID: gateID, Dir: dir})
	}
	sent := func(want int32, what string) {
		t.Helper()
		if n := logins.Load(); n != want {
			t.Fatalf("%s: the gate has received %d logins, want %d", what, n, want)
		}
	}

	// A first login with the CA alone sends nothing, and names the
	// identity for the user to compare.
	_, err := login("")
	var fu *IdentityFirstUseError
	if !errors.As(err, &fu) || fu.GateID != gate1ID || fu.Fingerprint != Fingerprint(gate1.Leaf) {
		t.Fatalf("first login with --ca alone: %v, want an *IdentityFirstUseError naming %s", err, gate1ID)
	}
	if want := "first connection to " + addr + ": its certificate verifies with " + ca.file + " and names the gate " + gate1ID +
		", but any gate or server that CA certified would verify too: compare the identity with the gate's console (the \"device identity\" line) and log in with --gate-id " +
		gate1ID + "; no credential was sent"; err.Error() != want {
		t.Errorf("error:\n%s\nwant\n%s", err, want)
	}
	sent(0, "first login with --ca alone")

	// Another gate of the same CA answering the first login: refused.
	shown.Store(gate2)
	_, err = login(gate1ID)
	var ic *IdentityChangedError
	if !errors.As(err, &ic) || !ic.Given || ic.Want != gate1ID || ic.Got != gate2ID {
		t.Fatalf("first login with --gate-id %s to %s: %v, want an *IdentityChangedError", gate1ID, gate2ID, err)
	}
	sent(0, "first login to the wrong gate")
	if _, err := os.Stat(filepath.Join(dir, ProfileFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused login left a profile: %v", err)
	}

	// The right gate: the profile is bound to its identity.
	shown.Store(gate1)
	res, err := login(gate1ID)
	if err != nil {
		t.Fatalf("login with --gate-id %s: %v", gate1ID, err)
	}
	if res.GateID != gate1ID || !res.BoundGateID {
		t.Errorf("login: %+v, want bound to %s now", res, gate1ID)
	}
	sent(1, "login to the gate given")
	if p, err := LoadProfile(dir); err != nil || p.GateID != gate1ID {
		t.Fatalf("profile: %+v, %v; want gate_id %s", p, err, gate1ID)
	}
	// A renewal needs no --gate-id: the stored one is required.
	if res, err := login(""); err != nil || res.BoundGateID {
		t.Fatalf("renewal: %+v, %v", res, err)
	}
	sent(2, "renewal")

	// Another gate of the same CA at the address now: every connection
	// of the profile, and a new login, refuse it.
	shown.Store(gate2)
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Assets(ctx)
	want := "WARNING: gate identity changed: the gate at " + addr + " is not the one this profile is bound to: its certificate verifies with " + ca.file +
		" but names " + gate2ID + ", not " + gate1ID + ": another gate or server that CA certified is answering at this address " +
		"(someone may be intercepting the connection, or the gate was replaced); nothing was sent to it. Only if its administrator confirms the gate was replaced and its identity is " +
		gate2ID + ", log in again with --ca " + ca.file + " --gate-id " + gate2ID
	if err == nil || err.Error() != want {
		t.Errorf("assets with another gate of the CA:\n%v\nwant\n%s", err, want)
	}
	if _, err := login(""); err == nil || err.Error() != want {
		t.Errorf("login with another gate of the CA:\n%v\nwant\n%s", err, want)
	}
	sent(2, "login to another gate of the same CA")

	// Re-trusting deliberately: the identity given replaces the stored
	// identity and pin.
	res, err = login(gate2ID)
	if err != nil || res.GateID != gate2ID || !res.BoundGateID || res.Fingerprint != Fingerprint(gate2.Leaf) {
		t.Fatalf("login with --gate-id %s: %+v, %v", gate2ID, res, err)
	}
	sent(3, "re-trust")

	// A server the CA certified that is no gate (no gate identity) is
	// refused even on a first login, and with TrustFirstUse.
	shown.Store(ca.issue(t, nil, "historian.plant-a.example"))
	for _, o := range []LoginOptions{
		{Gate: addr, User: "alice", Password: "pw", Code: "1", CAFile: ca.file, Dir: filepath.Join(t.TempDir(), "p")},
		{Gate: addr, User: "alice", Password: "pw", Code: "1", CAFile: ca.file, Dir: filepath.Join(t.TempDir(), "p"), TrustFirstUse: true},
	} {
		_, err := Login(ctx, o)
		if err == nil || !strings.Contains(err.Error(), "gate certificate (verified with "+ca.file+") names no gate identity (a URI spiffe://SITE/gate/SERIAL): it is not an otgate gate's device certificate; nothing was sent to it") {
			t.Errorf("login to a server of the CA without a gate identity (TrustFirstUse %v): %v", o.TrustFirstUse, err)
		}
	}
	sent(3, "login to a server that is no gate")
}

// TestGateIDFlagChecked: a gate identity given is checked before
// anything is dialled.
func TestGateIDFlagChecked(t *testing.T) {
	for _, ok := range []string{gate1ID, "spiffe://plant-1.example/gate/1c792faafe2ca623"} {
		if got, err := CheckGateID(ok); err != nil || got != ok {
			t.Errorf("CheckGateID(%q): %q, %v", ok, got, err)
		}
	}
	for _, bad := range []string{"", "gw-0001", "spiffe://plant-a.example/gate/", "spiffe://plant-a.example/gate/gw-1/service/proxy",
		"spiffe://Plant-A.example/gate/gw-1", "https://plant-a.example/gate/gw-1", "spiffe://plant-a.example:1/gate/gw-1", "spiffe://plant-a.example/gate/gw-1?x"} {
		if _, err := CheckGateID(bad); err == nil {
			t.Errorf("CheckGateID(%q) accepted", bad)
		}
	}
	_, err := Login(context.Background(), LoginOptions{Gate: "127.0.0.1:1", GateID: gate1ID, Dir: filepath.Join(t.TempDir(), "p")})
	if err == nil || !strings.HasPrefix(err.Error(), "gate identity "+gate1ID+" given without a CA file") {
		t.Errorf("--gate-id without --ca: %v", err)
	}
}

// A renewal without the CA file keeps the profile's binding: the CA file
// and the gate identity stay in the profile, and another gate of the same
// CA is still refused (the renewal used to store the pin alone, dropping
// the binding without a word).
func TestRenewalWithoutTheCAKeepsTheBinding(t *testing.T) {
	ca := newSiteCA(t)
	gate1, gate2 := ca.issue(t, []string{gate1ID}), ca.issue(t, []string{gate2ID})
	var shown atomic.Pointer[tls.Certificate]
	shown.Store(gate1)
	addr, _ := loginGateShowing(t, &shown)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir := filepath.Join(t.TempDir(), "otgate")
	if _, err := Login(ctx, LoginOptions{Gate: addr, User: "alice", Password: "pw", Code: "123456", CAFile: ca.file, GateID: gate1ID, Dir: dir}); err != nil {
		t.Fatal(err)
	}
	renew := func() (*LoginResult, error) {
		return Login(ctx, LoginOptions{Gate: addr, User: "alice", Password: "pw", Code: "123456", Dir: dir})
	}
	res, err := renew()
	if err != nil || res.GateID != gate1ID || res.BoundGateID {
		t.Fatalf("renewal without the CA file: %+v, %v; want still bound to %s", res, err, gate1ID)
	}
	if p, err := LoadProfile(dir); err != nil || p.GateID != gate1ID || p.CAFile != ca.file {
		t.Fatalf("profile after the renewal: %+v, %v; want gate_id %s and CA file %s", p, err, gate1ID, ca.file)
	}
	shown.Store(gate2)
	_, err = renew()
	var ic *IdentityChangedError
	if !errors.As(err, &ic) || ic.Want != gate1ID || ic.Got != gate2ID {
		t.Fatalf("renewal without the CA file, another gate of the CA answering: %v, want an *IdentityChangedError", err)
	}
}

// A pin or gate identity the user confirmed at a prompt (Confirmed:
// otgate login showed what GateFingerprint or GateIdentity returned and
// the user said yes) that the gate no longer shows at the login is
// refused saying it was the one confirmed at the prompt, not one given;
// nothing is sent and nothing stored. Without Confirmed it is "given".
func TestConfirmedGateChangedBeforeLogin(t *testing.T) {
	ca := newSiteCA(t)
	gate1, gate2 := ca.issue(t, []string{gate1ID}), ca.issue(t, []string{gate2ID})
	var shown atomic.Pointer[tls.Certificate]
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, confirmed := range []bool{true, false} {
		shown.Store(gate1)
		addr, logins := loginGateShowing(t, &shown)
		id, _, err := GateIdentity(ctx, addr, ca.file)
		if err != nil || id != gate1ID {
			t.Fatalf("GateIdentity: %q, %v; want %s", id, err, gate1ID)
		}
		fp, err := GateFingerprint(ctx, addr, "")
		if err != nil {
			t.Fatal(err)
		}
		shown.Store(gate2) // another server answers after the prompt
		dir := filepath.Join(t.TempDir(), "otgate")

		_, err = Login(ctx, LoginOptions{Gate: addr, User: "alice", Password: "pw", Code: "123456", CAFile: ca.file, GateID: id, Confirmed: confirmed, Dir: dir})
		var ic *IdentityChangedError
		if !errors.As(err, &ic) || ic.Confirmed != confirmed || !ic.Given || ic.Want != gate1ID || ic.Got != gate2ID {
			t.Fatalf("confirmed %v, identity: %v (%+v), want an *IdentityChangedError of %s for %s", confirmed, err, ic, gate2ID, gate1ID)
		}
		wantID := "is not the gate identity given: "
		if confirmed {
			wantID = "is not the gate identity confirmed at the prompt: "
		}
		if msg := err.Error(); !strings.Contains(msg, wantID) || !strings.Contains(msg, "no credential was sent") {
			t.Errorf("confirmed %v, identity: %q, want it to say %q", confirmed, msg, wantID)
		}

		_, err = Login(ctx, LoginOptions{Gate: addr, User: "alice", Password: "pw", Code: "123456", Pin: fp, Confirmed: confirmed, Dir: dir})
		var kc *KeyChangedError
		if !errors.As(err, &kc) || kc.Confirmed != confirmed || !kc.Given || kc.Pinned != fp {
			t.Fatalf("confirmed %v, pin: %v (%+v), want a *KeyChangedError for %s", confirmed, err, kc, fp)
		}
		wantKey := "is not the pin given: "
		if confirmed {
			wantKey = "is not the one confirmed at the prompt: you confirmed SHA-256 " + fp + ", the gate showed SHA-256 " + kc.Got + " after the prompt"
		}
		if msg := err.Error(); !strings.Contains(msg, wantKey) || !strings.Contains(msg, "no credential was sent") {
			t.Errorf("confirmed %v, pin: %q, want it to say %q", confirmed, msg, wantKey)
		}
		if n := logins.Load(); n != 0 {
			t.Fatalf("confirmed %v: %d logins reached the gate", confirmed, n)
		}
		if _, err := os.Stat(filepath.Join(dir, ProfileFile)); err == nil {
			t.Fatalf("confirmed %v: a refused login stored a profile", confirmed)
		}
	}
}
