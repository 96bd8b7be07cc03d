package identity

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/otgate/otgate/services/identity/api"
	"github.com/otgate/otgate/services/identity/swtpmtest"
)

// TestDeviceKeyCannotMintCertificates: a caller of the socket (the
// proxy's uid) cannot have the device key sign a certificate: the service
// signs TLS 1.3 handshakes and audit checkpoints only. And a certificate
// signed by the device key anyway (in-process here: someone with the TPM
// itself) must not verify with the device certificate as the root: a new
// identity's device certificate is an end entity. (With the old CA device
// certificate, path length 1, and the old sign operation over any digest,
// it verified: a client-auth certificate naming the gate, valid for as
// long as the attacker chose.)
func TestDeviceKeyCannotMintCertificates(t *testing.T) {
	id, log := openLogged(t)
	sock := serve(t, id, -1, map[uint32]string{uint32(os.Getuid()): "proxy"})
	c, err := api.Dial(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	gate, err := c.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	device := gate.Leaf
	if device.IsCA || !device.BasicConstraintsValid || device.KeyUsage&x509.KeyUsageCertSign != 0 {
		t.Errorf("device certificate: IsCA %v, basic constraints present %v, key usage %d: want an end entity without keyCertSign",
			device.IsCA, device.BasicConstraintsValid, int(device.KeyUsage))
	}

	// The attacker's certificate: the gate's own SPIFFE ID for client
	// authentication, ten years, for a key of the attacker's.
	mine, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(666), Subject: pkix.Name{CommonName: "otgate gate " + id.Serial()},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(10, 0, 0),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		URIs: []*url.URL{DeviceURI(id.Site(), id.Serial())},
	}
	// Through the socket: refused (x509 hands the client's signer the
	// whole TBS, and the service does not sign it).
	if _, err := x509.CreateCertificate(rand.Reader, tmpl, device, &mine.PublicKey, gate.PrivateKey); !errors.Is(err, api.ErrBadRequest) || !strings.Contains(err.Error(), "neither") {
		t.Fatalf("a certificate signed through the socket: %v, want a bad request", err)
	}
	if !strings.Contains(log.String(), "refused to sign for proxy (uid ") {
		t.Errorf("the refusal is not in the service's log:\n%s", log.String())
	}
	forgedDER, err := x509.CreateCertificate(rand.Reader, tmpl, device, &mine.PublicKey, id.Signer())
	if err != nil {
		t.Fatal(err)
	}
	forged, err := x509.ParseCertificate(forgedDER)
	if err != nil {
		t.Fatal(err)
	}
	// The signature is the device key's ...
	if err := device.CheckSignature(forged.SignatureAlgorithm, forged.RawTBSCertificate, forged.Signature); err != nil {
		t.Fatalf("the TBS was not signed by the device key: %v", err)
	}
	// ... but the device certificate does not make it a certificate.
	roots := x509.NewCertPool()
	roots.AddCert(device)
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageAny} {
		if chains, err := forged.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{usage}}); err == nil {
			t.Errorf("a certificate signed by the device key verifies with the device certificate as root (usage %v): chain of %d", usage, len(chains[0]))
		}
	}
	if err := forged.CheckSignatureFrom(device); err == nil {
		t.Error("CheckSignatureFrom(device certificate) accepts a certificate signed by the device key")
	}

	// The workload CA is its own root, not signed by the device key, and
	// still issues certificates that verify under it.
	wc, pool, err := c.WorkloadCertificate(10 * time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(wc.Certificate[1])
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.CheckSignatureFrom(ca); err != nil || !bytes.Equal(ca.RawIssuer, ca.RawSubject) {
		t.Errorf("workload CA is not self-signed: issuer %q: %v", ca.Issuer, err)
	}
	if device.CheckSignature(ca.SignatureAlgorithm, ca.RawTBSCertificate, ca.Signature) == nil {
		t.Error("the workload CA is still signed by the device key")
	}
	if !ca.IsCA || !ca.MaxPathLenZero {
		t.Errorf("workload CA: IsCA %v, MaxPathLenZero %v", ca.IsCA, ca.MaxPathLenZero)
	}
	if _, err := wc.Leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("workload certificate does not verify with the workload CA: %v", err)
	}
	// The gate's TLS still works with the end-entity certificate pinned
	// as the only trust anchor (a client's CA file holding it).
	tlsHandshake(t, gate, device)
}

// fixtureTime is when testdata/state-before-end-entity was made (by the
// code before device certificates became end entities: a CA device
// certificate, path length 1, and a workload CA signed by the device key).
var fixtureTime = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

// copyTree copies the directory src to dst.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o700)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// lockedBuffer collects log lines written from any goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestStateBeforeEndEntityStillStarts: an identity made by the earlier
// code (state directory and swtpm state in testdata, made by that code)
// still starts, keeps its CA device certificate (clients may hold it),
// says once at the start that it is a CA and what to do, unseals its
// secrets and issues workload certificates from its old workload CA;
// renew-cert then gives it an end-entity certificate for the same key.
func TestStateBeforeEndEntityStillStarts(t *testing.T) {
	root := t.TempDir()
	copyTree(t, "testdata/state-before-end-entity", root)
	sw := swtpmtest.Start(t, filepath.Join(root, "swtpm"))
	var log lockedBuffer
	clock := fixtureTime.Add(time.Hour)
	cfg := Config{StateDir: filepath.Join(root, "identity"), Site: "plant.example", TPM: SocketTPM(sw.Socket),
		BoardPCRs: []uint{0, 7}, Service: true, Log: &log, Now: func() time.Time { return clock }}
	deviceBefore, err := os.ReadFile(filepath.Join(cfg.StateDir, DeviceFile))
	if err != nil {
		t.Fatal(err)
	}
	id, err := Open(cfg)
	if err != nil {
		t.Fatalf("an identity made before the end-entity device certificate does not start: %v", err)
	}
	defer func() { id.Close() }()
	if q := id.Quarantine(); q != nil {
		t.Fatalf("in quarantine: %s", q.Reason)
	}
	if after, _ := os.ReadFile(filepath.Join(cfg.StateDir, DeviceFile)); !bytes.Equal(after, deviceBefore) {
		t.Error("the start rewrote device.cbor: the old device certificate must be kept")
	}
	old, _ := x509.ParseCertificate(id.DeviceCertificate()[0])
	if !old.IsCA {
		t.Fatal("the fixture's device certificate is not a CA: it was not made by the earlier code")
	}
	if n := strings.Count(log.String(), "renew-cert -yes"); n != 1 || !strings.Contains(log.String(), "WARNING: the self-signed device certificate") {
		t.Errorf("start log names the CA device certificate and its remedy %d times, want once:\n%s", n, log.String())
	}
	if got, err := id.UnsealSecret("proxy", "users"); err != nil || string(got) != "alice:hash" {
		t.Errorf("secret sealed by the earlier code: %q, %v", got, err)
	}
	leafDER, caDER, err := id.IssueWorkloadCertificate("proxy", testCSR(t), 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(leafDER)
	ca, _ := x509.ParseCertificate(caDER)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: clock, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("workload certificate from the old workload CA: %v", err)
	}
	sock := serve(t, id, -1, map[uint32]string{uint32(os.Getuid()): "proxy"})
	c, err := api.Dial(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	st, err := c.Status()
	if err != nil {
		t.Fatal(err)
	}
	if st.CertNotAfter != old.NotAfter.Unix() || len(st.CertWarnings) != 1 || !strings.Contains(st.CertWarnings[0], "is a CA") {
		t.Errorf("status: certificate valid until %d (want %d), warnings %q", st.CertNotAfter, old.NotAfter.Unix(), st.CertWarnings)
	}

	// The remedy: an end-entity certificate for the same key; the next
	// start says nothing.
	renewed, err := id.RenewSelfSignedCertificate()
	if err != nil {
		t.Fatal(err)
	}
	if renewed.IsCA || !bytes.Equal(renewed.RawSubjectPublicKeyInfo, old.RawSubjectPublicKeyInfo) {
		t.Errorf("renewed certificate: IsCA %v, same key %v", renewed.IsCA, bytes.Equal(renewed.RawSubjectPublicKeyInfo, old.RawSubjectPublicKeyInfo))
	}
	id.Close()
	var log2 lockedBuffer
	cfg.Log = &log2
	if id, err = Open(cfg); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(log2.String(), "WARNING") {
		t.Errorf("after renew-cert the start still warns:\n%s", log2.String())
	}
	if _, w := id.DeviceCertificateStatus(); len(w) != 0 {
		t.Errorf("after renew-cert: warnings %q", w)
	}
}

// TestDeviceCertificateExpiryIsReported: in its last 30 days, and once
// expired, the device certificate's end is a warning in the status answer
// (with what to do), and not before.
func TestDeviceCertificateExpiryIsReported(t *testing.T) {
	_, opener := startTPM(t)
	cfg := testConfig(t, opener)
	id, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(id.DeviceCertificate()[0])
	id.Close()
	for _, tc := range []struct {
		at   time.Time
		want string // "": no warning
	}{
		{cert.NotAfter.Add(-CertExpiryWarning - time.Hour), ""},
		{cert.NotAfter.Add(-CertExpiryWarning + time.Hour), "expires on " + cert.NotAfter.UTC().Format(time.RFC3339) + ", in 29 days -- what to do: `otgate identity renew-cert -yes`"},
		{cert.NotAfter.Add(time.Hour), "EXPIRED on " + cert.NotAfter.UTC().Format(time.RFC3339)},
	} {
		at := tc.at
		cfg.Now = func() time.Time { return at }
		id, err := Open(cfg)
		if err != nil {
			t.Fatal(err)
		}
		sock := serve(t, id, -1, map[uint32]string{uint32(os.Getuid()): "admin"})
		c, err := api.Dial(sock)
		if err != nil {
			t.Fatal(err)
		}
		st, err := c.Status()
		c.Close()
		id.Close()
		if err != nil {
			t.Fatal(err)
		}
		if st.CertNotAfter != cert.NotAfter.Unix() {
			t.Errorf("at %s: status says valid until %d, want %d", at, st.CertNotAfter, cert.NotAfter.Unix())
		}
		switch {
		case tc.want == "" && len(st.CertWarnings) != 0:
			t.Errorf("at %s: warnings %q, want none", at, st.CertWarnings)
		case tc.want != "" && (len(st.CertWarnings) != 1 || !strings.Contains(st.CertWarnings[0], tc.want)):
			t.Errorf("at %s: warnings %q, want one saying %q", at, st.CertWarnings, tc.want)
		}
	}
}
