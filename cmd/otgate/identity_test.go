//go:build linux

package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/otgate/otgate/services/identity"
	"github.com/otgate/otgate/services/identity/swtpmtest"
)

func identityFlags(t *testing.T, sock, state string) *identity.Flags {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	f := identity.RegisterFlags(fs)
	// -allow-volatile-state: the test's temporary directory may be a tmpfs.
	if err := fs.Parse([]string{"-tpm-socket", sock, "-state", state, "-site", "plant.example", "-allow-volatile-state"}); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestIdentityCSRAndInstallCert drives `otgate identity csr` and
// `install-cert` against swtpm with a CA made in the test.
func TestIdentityCSRAndInstallCert(t *testing.T) {
	sw := swtpmtest.Start(t, "")
	state := filepath.Join(t.TempDir(), "identity")
	f := identityFlags(t, sw.Socket, state)

	// No identity yet: the CLI does not create one.
	if err := identityCSR(f, "-", &bytes.Buffer{}); !errors.Is(err, identity.ErrNoIdentity) {
		t.Fatalf("csr without identity: got %v, want ErrNoIdentity", err)
	}
	if err := runIdentity([]string{"reset", "-tpm-socket", sw.Socket, "-state", state}); err == nil {
		t.Fatal("reset without -yes ran")
	}
	if err := runIdentity([]string{"reset", "-yes", "-tpm-socket", sw.Socket, "-state", state, "-site", "plant.example", "-allow-volatile-state"}); err != nil {
		t.Fatal(err)
	}

	csrFile := filepath.Join(t.TempDir(), "gate.csr")
	if err := runIdentity([]string{"csr", "-tpm-socket", sw.Socket, "-state", state, "-out", csrFile}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(csrFile)
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE REQUEST" {
		t.Fatalf("csr output is not a PEM CSR: %q", b)
	}
	csr, err := x509.ParseCertificateRequest(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if err := csr.CheckSignature(); err != nil {
		t.Fatalf("CSR signature: %v", err)
	}
	if len(csr.URIs) != 1 || !strings.HasPrefix(csr.URIs[0].String(), "spiffe://plant.example/gate/") {
		t.Fatalf("CSR URIs %v", csr.URIs)
	}

	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, _ := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(pub any) string {
		der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(7),
			Subject: csr.Subject, URIs: csr.URIs, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)},
			ca, pub, caKey)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(t.TempDir(), "cert.pem")
		os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
		return p
	}
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	err = runIdentity([]string{"install-cert", "-tpm-socket", sw.Socket, "-state", state, "-in", issue(&other.PublicKey)})
	if !errors.Is(err, identity.ErrCertKeyMismatch) {
		t.Fatalf("install of a certificate for another key: got %v, want ErrCertKeyMismatch", err)
	}
	if err := runIdentity([]string{"install-cert", "-tpm-socket", sw.Socket, "-state", state, "-in", issue(csr.PublicKey)}); err != nil {
		t.Fatal(err)
	}
	// A CA certificate for the device key is refused: the device key
	// signs digests for the gate's services and must not certify.
	caLeaf, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(8),
		Subject: csr.Subject, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}, ca, csr.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caLeafFile := filepath.Join(t.TempDir(), "ca-leaf.pem")
	os.WriteFile(caLeafFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caLeaf}), 0o644)
	err = runIdentity([]string{"install-cert", "-tpm-socket", sw.Socket, "-state", state, "-in", caLeafFile})
	if !errors.Is(err, identity.ErrCertChain) || !strings.Contains(err.Error(), caLeafFile) || !strings.Contains(err.Error(), "is a CA") {
		t.Fatalf("install of a CA certificate: got %v, want ErrCertChain naming the file and the reason", err)
	}

	// renew-cert replaces the installed certificate with a self-signed
	// end entity for the same key, only with -yes.
	if err := runIdentity([]string{"renew-cert", "-tpm-socket", sw.Socket, "-state", state}); err == nil {
		t.Fatal("renew-cert without -yes ran")
	}
	if err := runIdentity([]string{"renew-cert", "-yes", "-tpm-socket", sw.Socket, "-state", state}); err != nil {
		t.Fatal(err)
	}
	id, err := f.Open(false, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	defer id.Close()
	chain := id.DeviceCertificate()
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		t.Fatal(err)
	}
	if len(chain) != 1 || leaf.IsCA || leaf.CheckSignatureFrom(ca) == nil || !bytes.Equal(leaf.RawIssuer, leaf.RawSubject) ||
		!leaf.PublicKey.(*ecdsa.PublicKey).Equal(csr.PublicKey) {
		t.Fatalf("after renew-cert: %d certificates, IsCA %v, issuer %q", len(chain), leaf.IsCA, leaf.Issuer)
	}
}
