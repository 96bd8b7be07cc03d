package identity

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"testing"
	"time"
)

// testCA is an enterprise CA made in the test.
type testCA struct {
	key  *ecdsa.PrivateKey
	cert *x509.Certificate
}

func newTestCA(t *testing.T) *testCA {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Plant Enterprise CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{key, cert}
}

// sign issues a certificate for csrDER (checking its signature, as a CA
// does), returned as a PEM chain leaf + CA.
func (ca *testCA) sign(t *testing.T, csrDER []byte) []byte {
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		t.Fatal(err)
	}
	if err := csr.CheckSignature(); err != nil {
		t.Fatalf("CSR signature: %v", err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: csr.Subject, URIs: csr.URIs,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(12 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, csr.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw})...)
}

func TestCSRAndInstallCertificate(t *testing.T) {
	_, opener := startTPM(t)
	cfg := testConfig(t, opener)
	id, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ca := newTestCA(t)
	csr, err := id.CSR()
	if err != nil {
		t.Fatal(err)
	}
	chain := ca.sign(t, csr)

	// A certificate for another key is refused and changes nothing.
	otherKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	otherCSR, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, otherKey)
	before := snapshot(t, cfg.StateDir)
	if err := id.InstallCertificate(ca.sign(t, otherCSR)); !errors.Is(err, ErrCertKeyMismatch) {
		t.Fatalf("foreign certificate: got %v, want ErrCertKeyMismatch", err)
	}
	if err := id.InstallCertificate([]byte("not a certificate")); err == nil {
		t.Fatal("garbage installed")
	}
	if snapshot(t, cfg.StateDir) != before {
		t.Fatal("a refused certificate changed the state")
	}

	if err := id.InstallCertificate(chain); err != nil {
		t.Fatal(err)
	}
	id.Close()

	// After a restart the enterprise certificate is served, and a TLS
	// client trusting only the enterprise CA accepts the TPM-backed key.
	id, err = Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer id.Close()
	got := id.DeviceCertificate()
	leaf, _ := x509.ParseCertificate(got[0])
	if leaf.Issuer.CommonName != "Plant Enterprise CA" || len(got) != 2 {
		t.Fatalf("installed chain not kept: issuer %q, %d certificates", leaf.Issuer.CommonName, len(got))
	}
	tlsHandshake(t, tlsCertificate{chain: got, signer: id.Signer()}.get(), ca.cert)
}

// TestRunningServiceServesANewlyInstalledCertificate: install-cert from
// another process (a second Identity on the same state, as the CLI is)
// while the service runs; the next tls-cert answer carries it.
func TestRunningServiceServesANewlyInstalledCertificate(t *testing.T) {
	cfg := Config{StateDir: t.TempDir() + "/identity", Site: "lab", DevMode: true, Create: true, Log: testWriter{t}}
	svc, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	cli, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	csr, _ := cli.CSR()
	if err := cli.InstallCertificate(newTestCA(t).sign(t, csr)); err != nil {
		t.Fatal(err)
	}
	cli.Close()
	leaf, _ := x509.ParseCertificate(svc.DeviceCertificate()[0])
	if leaf.Issuer.CommonName != "Plant Enterprise CA" {
		t.Fatalf("running service still serves the certificate issued by %q", leaf.Issuer.CommonName)
	}
}
