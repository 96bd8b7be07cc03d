package identity

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"os"
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

}

// The dev and TPM modes never mix: state made in one mode and opened in
// the other (with a real TPM there, so the refusal is load's comparison,
// not a missing TPM) fails with a *StateError naming key.cbor and the
// mode, and changes nothing.
func TestModeMismatchRefused(t *testing.T) {
	_, opener := startTPM(t)
	open := func(cfg Config, wantProblem string) {
		t.Helper()
		before := snapshot(t, cfg.StateDir)
		id, err := Open(cfg)
		if err == nil {
			id.Close()
			t.Fatalf("opened with DevMode %v: want refusal", cfg.DevMode)
		}
		var se *StateError
		if !errors.As(err, &se) || !errors.Is(err, ErrStateCorrupt) || se.Path != filepath.Join(cfg.StateDir, KeyFile) ||
			!strings.Contains(err.Error(), wantProblem) {
			t.Fatalf("DevMode %v: got %v, want a *StateError on %s saying %q", cfg.DevMode, err, KeyFile, wantProblem)
		}
		if errors.Is(err, ErrNoTPM) {
			t.Fatalf("refused for a missing TPM, not the mode: %v", err)
		}
		t.Logf("%v", err)
		if after := snapshot(t, cfg.StateDir); after != before {
			t.Fatal("state directory changed")
		}
	}

	// Dev-mode state, opened in TPM mode with a TPM present.
	dev := Config{StateDir: filepath.Join(t.TempDir(), "identity"), Site: "lab", DevMode: true, Create: true, Log: testWriter{t}}
	id, err := Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	id.Close()
	dev.DevMode, dev.TPM = false, opener
	open(dev, "holds a dev-mode software key but dev mode is not set")

	// TPM state, opened in dev mode.
	tpm := testConfig(t, opener)
	id, err = Open(tpm)
	if err != nil {
		t.Fatal(err)
	}
	id.Close()
	tpm.DevMode = true
	open(tpm, "holds a TPM key but dev mode is set")

	// A seal.cbor of the other mode next to a matching key.cbor.
	devDir := dev.StateDir
	tpm.DevMode = false
	copyState(t, filepath.Join(devDir, SealFile), filepath.Join(tpm.StateDir, SealFile))
	_, err = Open(tpm)
	var se *StateError
	if !errors.As(err, &se) || se.Path != filepath.Join(tpm.StateDir, SealFile) || !strings.Contains(err.Error(), "differs from key.cbor mode") {
		t.Fatalf("dev seal.cbor with a TPM key.cbor: %v, want a *StateError on %s", err, SealFile)
	}
}

func copyState(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
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
