package identity

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// chainCA is a CA of the test's enterprise PKI.
type chainCA struct {
	key  *ecdsa.PrivateKey
	cert *x509.Certificate
}

var chainSerial int64 = 100

// issueCert signs tmpl (Subject, validity and serial filled in when left
// empty) for pub by parent (nil: self-signed with key).
func issueCert(t *testing.T, tmpl *x509.Certificate, pub crypto.PublicKey, parent *chainCA, key *ecdsa.PrivateKey) *x509.Certificate {
	t.Helper()
	chainSerial++
	tmpl.SerialNumber = big.NewInt(chainSerial)
	if tmpl.NotBefore.IsZero() {
		tmpl.NotBefore = time.Now().Add(-time.Hour)
	}
	if tmpl.NotAfter.IsZero() {
		tmpl.NotAfter = time.Now().Add(30 * 24 * time.Hour)
	}
	issuer, signer := tmpl, key
	if parent != nil {
		issuer, signer = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, pub, signer)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// newChainCA makes a CA named cn, signed by parent (nil: a root). mod
// changes the template first.
func newChainCA(t *testing.T, cn string, parent *chainCA, mod func(*x509.Certificate)) *chainCA {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{Subject: pkix.Name{CommonName: cn}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	if mod != nil {
		mod(tmpl)
	}
	return &chainCA{key, issueCert(t, tmpl, &key.PublicKey, parent, key)}
}

func pemChain(certs ...*x509.Certificate) []byte {
	var b []byte
	for _, c := range certs {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return b
}

// TestInstallCertificateChecksTheChain: install-cert refuses a chain whose
// certificates do not sign each other, a leaf not valid yet, one that may
// not serve TLS or that is a CA, and intermediates that are not CAs,
// naming the certificate (position, subject) and why, and changing
// nothing; it accepts a chain that ends below the root.
func TestInstallCertificateChecksTheChain(t *testing.T) {
	_, opener := startTPM(t)
	cfg := testConfig(t, opener)
	id, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer id.Close()
	device := id.Signer().Public()
	root := newChainCA(t, "Plant Root CA", nil, nil)
	inter := newChainCA(t, "Plant Issuing CA", root, nil)
	// Same name as inter, another key: a leaf it signs names inter as issuer.
	impostor := newChainCA(t, "Plant Issuing CA", root, nil)
	leafTmpl := func(mod func(*x509.Certificate)) *x509.Certificate {
		tmpl := &x509.Certificate{Subject: pkix.Name{CommonName: "gate-7"},
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
			BasicConstraintsValid: true}
		if mod != nil {
			mod(tmpl)
		}
		return tmpl
	}
	leaf := func(by *chainCA, mod func(*x509.Certificate)) *x509.Certificate {
		return issueCert(t, leafTmpl(mod), device, by, nil)
	}
	notCA := newChainCA(t, "Plant Not A CA", root, func(c *x509.Certificate) { c.IsCA = false; c.KeyUsage = x509.KeyUsageDigitalSignature })
	noCertSign := newChainCA(t, "Plant No CertSign CA", root, func(c *x509.Certificate) { c.KeyUsage = x509.KeyUsageCRLSign })
	expiredCA := newChainCA(t, "Plant Expired CA", root, func(c *x509.Certificate) {
		c.NotBefore, c.NotAfter = time.Now().AddDate(-2, 0, 0), time.Now().Add(-time.Minute)
	})

	for _, tc := range []struct {
		name  string
		chain []byte
		want  string // "": installed
	}{
		{"leaf and intermediate, no root", pemChain(leaf(inter, nil), inter.cert), ""},
		{"whole chain", pemChain(leaf(inter, nil), inter.cert, root.cert), ""},
		{"leaf starting within the clock skew", pemChain(leaf(inter, func(c *x509.Certificate) { c.NotBefore = time.Now().Add(installClockSkew - time.Minute) }), inter.cert), ""},
		{"no key usages at all", pemChain(leaf(inter, func(c *x509.Certificate) { c.KeyUsage, c.ExtKeyUsage, c.BasicConstraintsValid = 0, nil, false }), inter.cert), ""},

		{"leaf not signed by the next", pemChain(leaf(impostor, nil), inter.cert),
			`certificate 1 (leaf, subject "CN=gate-7"): not signed by certificate 2 (subject "CN=Plant Issuing CA")`},
		{"out of order", pemChain(leaf(inter, nil), root.cert, inter.cert),
			`certificate 1 (leaf, subject "CN=gate-7"): its issuer "CN=Plant Issuing CA" is not the subject of certificate 2 ("CN=Plant Root CA")`},
		{"intermediate not signed by the next", pemChain(leaf(inter, nil), inter.cert, impostor.cert),
			`certificate 2 (intermediate, subject "CN=Plant Issuing CA"): its issuer "CN=Plant Root CA" is not the subject of certificate 3`},
		{"leaf not yet valid", pemChain(leaf(inter, func(c *x509.Certificate) { c.NotBefore = time.Now().Add(installClockSkew + time.Minute) }), inter.cert),
			`certificate 1 (leaf, subject "CN=gate-7"): not valid before`},
		{"leaf expired", pemChain(leaf(inter, func(c *x509.Certificate) {
			c.NotBefore, c.NotAfter = time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour)
		}), inter.cert),
			`certificate 1 (leaf, subject "CN=gate-7"): expired on`},
		{"leaf key usage without digitalSignature", pemChain(leaf(inter, func(c *x509.Certificate) { c.KeyUsage = x509.KeyUsageKeyAgreement }), inter.cert),
			`certificate 1 (leaf, subject "CN=gate-7"): its key usage lacks digitalSignature`},
		{"leaf for client authentication only", pemChain(leaf(inter, func(c *x509.Certificate) { c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth} }), inter.cert),
			`certificate 1 (leaf, subject "CN=gate-7"): its extended key usage does not allow TLS server authentication`},
		{"leaf is a CA", pemChain(leaf(inter, func(c *x509.Certificate) { c.IsCA = true; c.KeyUsage |= x509.KeyUsageCertSign }), inter.cert),
			`certificate 1 (leaf, subject "CN=gate-7"): is a CA`},
		{"leaf may sign certificates", pemChain(leaf(inter, func(c *x509.Certificate) { c.KeyUsage |= x509.KeyUsageCertSign }), inter.cert),
			`certificate 1 (leaf, subject "CN=gate-7"): allows certificate signing`},
		{"CA leaf without its issuer", pemChain(leaf(inter, func(c *x509.Certificate) { c.IsCA = true; c.Subject.CommonName = "gate-ca" })),
			`certificate 1 (leaf, subject "CN=gate-ca"): is a CA`},
		{"intermediate not a CA", pemChain(leaf(notCA, nil), notCA.cert, root.cert),
			`certificate 2 (intermediate, subject "CN=Plant Not A CA"): is not a CA`},
		{"intermediate without keyCertSign", pemChain(leaf(noCertSign, nil), noCertSign.cert),
			`certificate 2 (intermediate, subject "CN=Plant No CertSign CA"): its key usage lacks keyCertSign`},
		{"intermediate expired", pemChain(leaf(expiredCA, nil), expiredCA.cert),
			`certificate 2 (intermediate, subject "CN=Plant Expired CA"): expired on`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, err := os.ReadFile(filepath.Join(cfg.StateDir, DeviceFile))
			if err != nil {
				t.Fatal(err)
			}
			served := id.DeviceCertificate()
			err = id.InstallCertificate(tc.chain)
			after, _ := os.ReadFile(filepath.Join(cfg.StateDir, DeviceFile))
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if bytes.Equal(after, before) {
					t.Fatal("installed, but device.cbor did not change")
				}
				return
			}
			if !errors.Is(err, ErrCertChain) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want ErrCertChain saying %q", err, tc.want)
			}
			if !bytes.Equal(after, before) {
				t.Error("a refused chain changed device.cbor")
			}
			if now := id.DeviceCertificate(); len(now) != len(served) || !bytes.Equal(now[0], served[0]) {
				t.Error("a refused chain changed the certificate served")
			}
		})
	}
}
