package identity

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestNoTPMRefusesWithoutDevMode(t *testing.T) {
	cfg := Config{StateDir: filepath.Join(t.TempDir(), "identity"), Site: "lab", Create: true, Log: testWriter{t}}
	if _, err := Open(cfg); !errors.Is(err, ErrNoTPM) {
		t.Fatalf("no TPM, no dev mode: got %v, want ErrNoTPM", err)
	}
	cfg.TPM = DeviceTPM(filepath.Join(t.TempDir(), "no-such-tpm"))
	if _, err := Open(cfg); !errors.Is(err, ErrNoTPM) {
		t.Fatalf("absent TPM device: got %v, want ErrNoTPM", err)
	}
}

func isDevMarked(subject []string, uris []string) bool {
	return slices.Contains(subject, DevModeOU) && slices.Contains(uris, DevModeURI)
}

func uriStrings(c *x509.Certificate) []string {
	var s []string
	for _, u := range c.URIs {
		s = append(s, u.String())
	}
	return s
}

func TestDevModeMarksEveryCertificate(t *testing.T) {
	var logBuf strings.Builder
	cfg := Config{StateDir: filepath.Join(t.TempDir(), "identity"), Site: "lab", DevMode: true, Create: true, Log: &logBuf}
	id, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer id.Close()
	if !strings.Contains(logBuf.String(), "DEV MODE") {
		t.Fatalf("dev mode not logged loudly: %q", logBuf.String())
	}
	dev, err := x509.ParseCertificate(id.DeviceCertificate()[0])
	if err != nil {
		t.Fatal(err)
	}
	if !isDevMarked(dev.Subject.OrganizationalUnit, uriStrings(dev)) {
		t.Fatalf("device certificate not marked: OU %v URIs %v", dev.Subject.OrganizationalUnit, dev.URIs)
	}
	csrDER, err := id.CSR()
	if err != nil {
		t.Fatal(err)
	}
	csr, _ := x509.ParseCertificateRequest(csrDER)
	var csrURIs []string
	for _, u := range csr.URIs {
		csrURIs = append(csrURIs, u.String())
	}
	if !isDevMarked(csr.Subject.OrganizationalUnit, csrURIs) {
		t.Fatalf("CSR not marked: %v %v", csr.Subject.OrganizationalUnit, csrURIs)
	}
	wk, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	wcsr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, wk)
	leafDER, caDER, err := id.IssueWorkloadCertificate("proxy", wcsr, 30*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	for name, der := range map[string][]byte{"workload": leafDER, "workload CA": caDER} {
		c, _ := x509.ParseCertificate(der)
		if !isDevMarked(c.Subject.OrganizationalUnit, uriStrings(c)) {
			t.Fatalf("%s certificate not marked: %v %v", name, c.Subject.OrganizationalUnit, c.URIs)
		}
	}
	// Secrets work in dev mode too (data key not sealed).
	if err := id.SealSecret("proxy", "x", []byte("y")); err != nil {
		t.Fatal(err)
	}
	id.Close()

	// The dev identity is refused without dev mode, and a TPM identity is
	// never silently converted.
	cfg.DevMode = false
	cfg.TPM = DeviceTPM("/nonexistent")
	if _, err := Open(cfg); err == nil {
		t.Fatal("dev-mode state opened without dev mode")
	}
}

func TestTPMModeCertificatesAreNotDevMarked(t *testing.T) {
	_, opener := startTPM(t)
	id, err := Open(testConfig(t, opener))
	if err != nil {
		t.Fatal(err)
	}
	defer id.Close()
	c, _ := x509.ParseCertificate(id.DeviceCertificate()[0])
	if slices.Contains(c.Subject.OrganizationalUnit, DevModeOU) || slices.Contains(uriStrings(c), DevModeURI) {
		t.Fatal("TPM-mode certificate carries the dev-mode marker")
	}
	want := DeviceURI("plant-1.example", id.Serial()).String()
	if !slices.Contains(uriStrings(c), want) {
		t.Fatalf("device certificate URIs %v, want %s", c.URIs, want)
	}
	if ek, _, _ := id.EK(); len(ek) == 0 {
		t.Fatal("EK public key not recorded")
	}
}
