package userca_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"net/url"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/otgate/otgate/services/identity/api"
	"github.com/otgate/otgate/services/proxy/auth"
	"github.com/otgate/otgate/services/proxy/auth/authtest"
	"github.com/otgate/otgate/services/proxy/auth/totp"
	"github.com/otgate/otgate/services/proxy/auth/userca"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// gate is a store and a CA on a real identity service.
type gate struct {
	t      *testing.T
	id     *authtest.Identity
	device *tls.Certificate
	clock  *clock
	store  *auth.Store
	ca     *userca.CA
}

func newGate(t *testing.T) *gate {
	t.Helper()
	g := &gate{t: t, id: authtest.StartIdentity(t), clock: &clock{t: time.Now().Truncate(time.Second)}}
	var err error
	if g.device, err = g.id.Client.TLSCertificate(); err != nil {
		t.Fatal(err)
	}
	g.store, err = auth.Open(auth.Config{Dir: filepath.Join(t.TempDir(), "proxy"), Sealer: g.id.Client, Now: g.clock.Now,
		Argon2: auth.Argon2Params{Time: 1, MemoryKiB: 8 * 1024, Threads: 1, KeyLen: 32}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.store.Close() })
	g.ca = g.openCA()
	return g
}

func (g *gate) openCA() *userca.CA {
	g.t.Helper()
	ca, err := userca.Open(userca.Config{Site: authtest.Site, Sealer: g.id.Client, Device: g.device, Checker: g.store, Now: g.clock.Now})
	if err != nil {
		g.t.Fatal(err)
	}
	return ca
}

// login enrols user and logs in with a code from oathtool, returning
// what the proxy would pass to Issue.
func (g *gate) login(user string) *auth.Login {
	g.t.Helper()
	en, err := g.store.AddUser(user, []byte("correct horse battery"), []string{"engineer", "vendor"})
	if err != nil {
		g.t.Fatal(err)
	}
	bin, err := exec.LookPath("oathtool")
	if err != nil {
		g.t.Skip("oathtool not installed")
	}
	out, err := exec.Command(bin, "--totp", "-b", "--now", g.clock.Now().UTC().Format("2006-01-02 15:04:05 UTC"), totp.EncodeSecret(en.Key.Secret)).Output()
	if err != nil {
		g.t.Fatal(err)
	}
	l, err := g.store.Authenticate(user, []byte("correct horse battery"), strings.TrimSpace(string(out)), netip.MustParseAddr("192.0.2.1"))
	if err != nil {
		g.t.Fatal(err)
	}
	return l
}

// client is the user's key and certificate.
type client struct {
	key    *ecdsa.PrivateKey
	issued *userca.Issued
}

func (g *gate) issue(l *auth.Login, windowEnd time.Time) *client {
	g.t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		g.t.Fatal(err)
	}
	is, err := g.ca.Issue(userca.Request{User: l.User, Roles: l.Roles, Generation: l.Generation, PublicKey: key.Public(), WindowEnd: windowEnd})
	if err != nil {
		g.t.Fatal(err)
	}
	return &client{key: key, issued: is}
}

// handshake runs a real TLS 1.3 mutual handshake on loopback: the server
// uses the device certificate (signing through the identity service) and
// verifies the client with the CA. It returns the server's verdict.
func (g *gate) handshake(c *client) (*userca.Identity, error) {
	g.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		g.t.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		id  *userca.Identity
		err error
	}
	res := make(chan result, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			res <- result{err: err}
			return
		}
		defer conn.Close()
		var verr error
		srv := tls.Server(conn, &tls.Config{
			MinVersion:   tls.VersionTLS13,
			Certificates: []tls.Certificate{*g.device},
			ClientAuth:   tls.RequireAnyClientCert,
			ClientCAs:    g.ca.Pool(),
			VerifyPeerCertificate: func(raw [][]byte, chains [][]*x509.Certificate) error {
				verr = g.ca.VerifyPeerCertificate(raw, chains)
				return verr
			},
		})
		conn.SetDeadline(time.Now().Add(30 * time.Second))
		if err := srv.Handshake(); err != nil {
			if verr != nil {
				err = verr
			}
			res <- result{err: err}
			return
		}
		id, err := g.ca.IdentityOf(srv.ConnectionState().PeerCertificates)
		res <- result{id: id, err: err}
		srv.Write([]byte("ok"))
	}()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		g.t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	var certs []tls.Certificate
	if c != nil {
		certs = []tls.Certificate{{Certificate: [][]byte{c.issued.DER}, PrivateKey: c.key}}
	}
	cl := tls.Client(conn, &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: certs,
		// The client pins the gate's device certificate.
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 || string(raw[0]) != string(g.device.Certificate[0]) {
				return errors.New("not the gate's device certificate")
			}
			return nil
		},
	})
	cl.Handshake() // TLS 1.3: the client learns of a refusal on its first read
	buf := make([]byte, 2)
	cl.Read(buf)
	if v := cl.ConnectionState().Version; v != 0 && v != tls.VersionTLS13 {
		g.t.Errorf("TLS version %x", v)
	}
	r := <-res
	return r.id, r.err
}

func TestMutualTLSAndRevocation(t *testing.T) {
	g := newGate(t)
	l := g.login("alice")
	c := g.issue(l, time.Time{})
	id, err := g.handshake(c)
	if err != nil {
		t.Fatalf("handshake with a fresh certificate: %v", err)
	}
	if id.User != "alice" || id.Generation != l.Generation || id.Serial.Cmp(c.issued.Serial) != 0 || len(id.Roles) != 2 {
		t.Errorf("identity %+v", id)
	}

	// No certificate at all.
	if _, err := g.handshake(nil); err == nil {
		t.Error("handshake without a client certificate succeeded")
	}

	// One certificate revoked (logout of a session): that one is refused,
	// another of the same login still works.
	c2 := g.issue(l, time.Time{})
	if err := g.store.RevokeCertificate("alice", c.issued.Serial, c.issued.NotAfter, "logout"); err != nil {
		t.Fatal(err)
	}
	if _, err := g.handshake(c); !errors.Is(err, userca.ErrRevoked) {
		t.Errorf("revoked serial: %v, want ErrRevoked", err)
	}
	if _, err := g.handshake(c2); err != nil {
		t.Errorf("sibling certificate: %v", err)
	}

	// Generation bump (admin revoke): every earlier certificate is refused.
	if _, err := g.store.Revoke("alice", "admin revoke"); err != nil {
		t.Fatal(err)
	}
	if _, err := g.handshake(c2); !errors.Is(err, userca.ErrRevoked) || !errors.Is(err, auth.ErrCredentialRevoked) {
		t.Errorf("after generation bump: %v, want ErrRevoked", err)
	}
}

func TestDisabledUserCertificateRefused(t *testing.T) {
	g := newGate(t)
	c := g.issue(g.login("bob"), time.Time{})
	if err := g.store.Disable("bob"); err != nil {
		t.Fatal(err)
	}
	if _, err := g.handshake(c); !errors.Is(err, userca.ErrRevoked) {
		t.Errorf("disabled user: %v, want ErrRevoked", err)
	}
}

func TestValidityAndExpiry(t *testing.T) {
	g := newGate(t)
	l := g.login("alice")
	now := g.clock.Now()

	full := g.issue(l, time.Time{})
	if want := now.Add(userca.DefaultMaxValidity); !full.issued.NotAfter.Equal(want) {
		t.Errorf("no window: not after %v, want %v", full.issued.NotAfter, want)
	}
	windowEnd := now.Add(90 * time.Minute)
	short := g.issue(l, windowEnd)
	if !short.issued.NotAfter.Equal(windowEnd) {
		t.Errorf("window ending in 90 min: not after %v, want %v", short.issued.NotAfter, windowEnd)
	}
	if _, err := g.ca.Issue(userca.Request{User: "alice", Generation: l.Generation, PublicKey: short.key.Public(), WindowEnd: now.Add(-time.Second)}); !errors.Is(err, userca.ErrNoValidity) {
		t.Errorf("window already ended: %v", err)
	}
	if _, err := g.handshake(short); err != nil {
		t.Fatal(err)
	}
	g.clock.Add(91 * time.Minute)
	if _, err := g.handshake(short); !errors.Is(err, userca.ErrExpired) {
		t.Errorf("after the window: %v, want ErrExpired", err)
	}
	if _, err := g.handshake(full); err != nil {
		t.Errorf("the 8h certificate after 91 min: %v", err)
	}
	g.clock.Add(8 * time.Hour)
	if _, err := g.handshake(full); !errors.Is(err, userca.ErrExpired) {
		t.Errorf("after 8h: %v, want ErrExpired", err)
	}
}

// The user CA is a self-signed root: the device key certifies nothing
// (the identity's sign operation must not be able to mint CAs), and a
// user certificate is sent with the CA certificate alone.
func TestCASelfSignedAndPersistent(t *testing.T) {
	g := newGate(t)
	cert := g.ca.Certificate()
	if err := cert.CheckSignatureFrom(cert); err != nil {
		t.Fatalf("user CA is not self-signed: %v", err)
	}
	if err := g.device.Leaf.CheckSignature(cert.SignatureAlgorithm, cert.RawTBSCertificate, cert.Signature); err == nil {
		t.Error("user CA is signed by the device key")
	}
	if !cert.IsCA || cert.MaxPathLen != 0 || !cert.MaxPathLenZero {
		t.Errorf("CA constraints: IsCA %v MaxPathLen %d", cert.IsCA, cert.MaxPathLen)
	}
	if ch := g.ca.Chain(); len(ch) != 1 || !bytes.Equal(ch[0], cert.Raw) {
		t.Errorf("chain of %d certificates, want the CA alone", len(ch))
	}
	c := g.issue(g.login("alice"), time.Time{})
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	if _, err := c.issued.Cert.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: g.clock.Now(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("user certificate does not verify with the user CA as root: %v", err)
	}
	if len(c.issued.Serial.Bytes()) < 12 {
		t.Errorf("serial %x looks short for 128 random bits", c.issued.Serial)
	}
	u := c.issued.Cert.URIs
	if len(u) != 1 || u[0].String() != "spiffe://"+authtest.Site+"/user/alice" {
		t.Errorf("URIs %v", u)
	}
	// Reopened: the same CA, and old certificates still verify.
	again := g.openCA()
	if !again.Certificate().Equal(cert) {
		t.Error("reopened CA has another certificate")
	}
	g.ca = again
	if _, err := g.handshake(c); err != nil {
		t.Error(err)
	}
}

func TestForeignCertificateRefused(t *testing.T) {
	g := newGate(t)
	l := g.login("alice")
	// Same names, same extension, other CA: a different gate's.
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := *g.ca.Certificate()
	tmpl.Subject = pkix.Name{CommonName: tmpl.Subject.CommonName}
	tmpl.PublicKey, tmpl.AuthorityKeyId, tmpl.SubjectKeyId = key.Public(), nil, nil
	fake, err := x509.CreateCertificate(rand.Reader, &tmpl, &tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	fakeCA, _ := x509.ParseCertificate(fake)
	good := g.issue(l, time.Time{})
	forged := *good.issued.Cert
	forged.SerialNumber = big.NewInt(42)
	der, err := x509.CreateCertificate(rand.Reader, &forged, fakeCA, good.key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.ca.Verify([][]byte{der, fake}); !errors.Is(err, userca.ErrNotOurs) {
		t.Errorf("foreign certificate: %v, want ErrNotOurs", err)
	}
	if _, err := g.ca.Verify(nil); !errors.Is(err, userca.ErrNoCertificate) {
		t.Errorf("no certificate: %v", err)
	}
	if _, err := g.ca.Verify([][]byte{[]byte("junk")}); !errors.Is(err, userca.ErrMalformed) {
		t.Errorf("junk: %v", err)
	}
}

func TestIssueRefusesBadRequests(t *testing.T) {
	g := newGate(t)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	weak, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	for _, r := range []userca.Request{
		{User: "Alice", Generation: 1, PublicKey: key.Public()},
		{User: "alice", Generation: 0, PublicKey: key.Public()},
		{User: "alice", Generation: 1, PublicKey: weak.Public()},
		{User: "alice", Generation: 1, PublicKey: nil},
		{User: "alice", Roles: []string{"x y"}, Generation: 1, PublicKey: key.Public()},
	} {
		if _, err := g.ca.Issue(r); err == nil {
			t.Errorf("Issue(%+v) accepted", r)
		}
	}
	var _ crypto.Signer = key
}

func TestCorruptCASecret(t *testing.T) {
	g := newGate(t)
	if err := g.id.Client.Seal(userca.KeySecret, []byte("not a CA")); err != nil {
		t.Fatal(err)
	}
	_, err := userca.Open(userca.Config{Site: authtest.Site, Sealer: g.id.Client, Device: g.device, Checker: g.store})
	if !errors.Is(err, userca.ErrCAState) {
		t.Errorf("corrupt CA secret: %v, want ErrCAState", err)
	}
}

// A first boot whose hardware clock ran ahead (kept in local time, here
// 10 hours) makes the CA before the time service's first sync; the step
// back must leave it valid, or every login would fail until the gate's
// clock caught up with the CA's start.
func TestCAValidAfterTheClockIsSetBack(t *testing.T) {
	g := newGate(t)
	g.clock.Add(10 * time.Hour) // the unsynced clock at first boot
	ca, err := userca.Open(userca.Config{Site: authtest.Site, Sealer: &freshSealer{g.id.Client}, Device: g.device, Checker: g.store, Now: g.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	made := ca.Certificate()
	g.clock.Add(-10 * time.Hour) // the first sync steps it back
	g.ca = ca
	l := g.login("alice")
	if _, err := g.handshake(g.issue(l, time.Time{})); err != nil {
		t.Fatalf("a login after the clock was set back 10 hours: %v", err)
	}
	if !g.ca.Certificate().Equal(made) {
		t.Error("the CA was renewed; a day's backdate should have kept it valid")
	}
}

// freshSealer is a Sealer on which the CA secret does not exist yet (a
// first boot), sealing through to the real identity service.
type freshSealer struct{ userca.Sealer }

func (f *freshSealer) Unseal(name string) ([]byte, error) {
	if name == userca.KeySecret {
		return nil, api.ErrNotFound
	}
	return f.Sealer.Unseal(name)
}

// A CA with less than CARenewBefore left is renewed: at the next Issue of
// a running proxy (the old CA stays a trust anchor while valid, so the
// certificates it issued keep working) and at Open after a restart; the
// renewal is logged and sealed, and a reopened CA is the new one.
func TestCARenewedBeforeItExpires(t *testing.T) {
	g := newGate(t)
	var logs []string
	var mu sync.Mutex
	logf := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		logs = append(logs, fmt.Sprintf(format, args...))
	}
	ca, err := userca.Open(userca.Config{Site: authtest.Site, Sealer: g.id.Client, Device: g.device, Checker: g.store, Now: g.clock.Now, Logf: logf})
	if err != nil {
		t.Fatal(err)
	}
	g.ca = ca
	old := ca.Certificate()
	l := g.login("alice")

	// Nine years on, an hour before the renewal is due (the proxy never
	// restarted): the old CA still issues.
	g.clock.Add(old.NotAfter.Sub(g.clock.Now()) - userca.CARenewBefore - time.Hour)
	before := g.issue(l, time.Time{})
	if err := before.issued.Cert.CheckSignatureFrom(old); err != nil || !ca.Certificate().Equal(old) {
		t.Fatalf("renewed too early: %v", err)
	}
	// Two hours later a login gets a certificate from a new CA, and the
	// one issued before still verifies.
	g.clock.Add(2 * time.Hour)
	c := g.issue(l, time.Time{})
	renewed := ca.Certificate()
	if renewed.Equal(old) {
		t.Fatal("a CA with less than CARenewBefore left was not renewed at Issue")
	}
	if err := renewed.CheckSignatureFrom(renewed); err != nil {
		t.Errorf("the renewed CA is not self-signed: %v", err)
	}
	if got := renewed.NotAfter.Sub(g.clock.Now()); got < userca.CARenewBefore*9 {
		t.Errorf("the renewed CA has %s left", got)
	}
	if err := c.issued.Cert.CheckSignatureFrom(renewed); err != nil {
		t.Errorf("the new certificate is not from the renewed CA: %v", err)
	}
	if _, err := g.handshake(c); err != nil {
		t.Errorf("a certificate of the renewed CA: %v", err)
	}
	if _, err := g.handshake(before); err != nil {
		t.Errorf("a certificate of the old CA, issued before the renewal: %v", err)
	}
	mu.Lock()
	if len(logs) != 1 || !strings.Contains(logs[0], "userca: renewed the user CA") || !strings.Contains(logs[0], "less than") {
		t.Errorf("log %q", logs)
	}
	mu.Unlock()

	// A restart: the sealed CA is the renewed one, not due again.
	again := g.openCA()
	if !again.Certificate().Equal(renewed) {
		t.Error("reopened: not the renewed CA")
	}
}

// A CA that is not valid on the gate's clock at all (made on a first boot
// whose clock was years ahead, then set right) is renewed at Open, and
// logins work at once.
func TestCANotYetValidRenewedAtOpen(t *testing.T) {
	g := newGate(t)
	g.clock.Add(3 * 365 * 24 * time.Hour)
	future, err := userca.Open(userca.Config{Site: authtest.Site, Sealer: &freshSealer{g.id.Client}, Device: g.device, Checker: g.store, Now: g.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	g.clock.Add(-3 * 365 * 24 * time.Hour)
	var logged string
	ca, err := userca.Open(userca.Config{Site: authtest.Site, Sealer: g.id.Client, Device: g.device, Checker: g.store, Now: g.clock.Now,
		Logf: func(format string, args ...any) { logged = fmt.Sprintf(format, args...) }})
	if err != nil {
		t.Fatal(err)
	}
	if ca.Certificate().Equal(future.Certificate()) || !strings.Contains(logged, "not valid on this clock") {
		t.Fatalf("a CA not valid for three years was kept (log %q)", logged)
	}
	g.ca = ca
	if _, err := g.handshake(g.issue(g.login("alice"), time.Time{})); err != nil {
		t.Errorf("a login after the renewal: %v", err)
	}
}

// A user CA made by an earlier release, its certificate signed by the
// device key, still loads (its users keep logging in), is sent with the
// device chain as it was, and its renewal is self-signed. One signed by
// another key is refused.
func TestCAMadeByEarlierReleaseStillLoads(t *testing.T) {
	g := newGate(t)
	sealOld := func(signer crypto.Signer, parent *x509.Certificate) *x509.Certificate {
		t.Helper()
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		now := g.clock.Now()
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "otgate user CA " + authtest.Site, Organization: []string{"otgate"}},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(10 * 365 * 24 * time.Hour),
			KeyUsage:    x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, BasicConstraintsValid: true, IsCA: true, MaxPathLen: 0, MaxPathLenZero: true,
			URIs: []*url.URL{{Scheme: "spiffe", Host: authtest.Site, Path: "/user-ca"}},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), signer)
		if err != nil {
			t.Fatal(err)
		}
		pk, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		rec, err := cbor.Marshal(struct {
			Version int    `cbor:"1,keyasint"`
			Key     []byte `cbor:"2,keyasint"`
			Cert    []byte `cbor:"3,keyasint"`
		}{1, pk, der})
		if err != nil {
			t.Fatal(err)
		}
		if err := g.id.Client.Seal(userca.KeySecret, rec); err != nil {
			t.Fatal(err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	// The identity service no longer signs a certificate for its callers:
	// the earlier release's CA is signed in-process.
	old := sealOld(g.id.Device.Signer(), g.device.Leaf)
	ca := g.openCA()
	if !ca.Certificate().Equal(old) {
		t.Fatal("the earlier release's CA was not loaded")
	}
	if ch := ca.Chain(); len(ch) != 1+len(g.device.Certificate) || !bytes.Equal(ch[1], g.device.Certificate[0]) {
		t.Errorf("chain of %d certificates, want the CA and the device chain", len(ch))
	}
	g.ca = ca
	c := g.issue(g.login("alice"), time.Time{})
	if _, err := g.handshake(c); err != nil {
		t.Errorf("a certificate of the earlier release's CA: %v", err)
	}
	// Its renewal is self-signed.
	g.clock.Add(old.NotAfter.Sub(g.clock.Now()) - userca.CARenewBefore + time.Hour)
	g.issue(g.login("bob"), time.Time{})
	if r := ca.Certificate(); r.Equal(old) || r.CheckSignatureFrom(r) != nil {
		t.Error("the renewal of the earlier release's CA is not a new self-signed CA")
	}

	// Signed by a key that is not this gate's: refused.
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	otherCert := &x509.Certificate{SerialNumber: big.NewInt(9), Subject: pkix.Name{CommonName: "someone else"}, BasicConstraintsValid: true, IsCA: true,
		NotBefore: g.clock.Now().Add(-time.Hour), NotAfter: g.clock.Now().Add(time.Hour), PublicKey: other.Public()}
	sealOld(other, otherCert)
	_, err = userca.Open(userca.Config{Site: authtest.Site, Sealer: g.id.Client, Device: g.device, Checker: g.store, Now: g.clock.Now})
	if !errors.Is(err, userca.ErrCAState) || !strings.Contains(err.Error(), "neither self-signed nor signed by this gate's device key") {
		t.Errorf("a CA signed by another key: %v", err)
	}
}
