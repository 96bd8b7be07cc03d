package identity

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/otgate/otgate/services/identity/swtpmtest"
)

// boot simulates init on a (re)booted TPM: extend the measured PCR with
// the digest of "what it boots", then open the identity.
func boot(t *testing.T, cfg Config, sw *swtpmtest.TPM, booted string) *Identity {
	t.Helper()
	tpm, err := SocketTPM(sw.Socket).Open()
	if err != nil {
		t.Fatal(err)
	}
	if err := ExtendBootMeasurement(tpm, sha256.Sum256([]byte(booted))); err != nil {
		t.Fatal(err)
	}
	tpm.Close()
	cfg.TPM = SocketTPM(sw.Socket)
	id, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestSealUnsealRoundTrip(t *testing.T) {
	sw := swtpmtest.Start(t, "")
	cfg := testConfig(t, SocketTPM(sw.Socket))
	id := boot(t, cfg, sw, "image-A")
	secret := []byte("totp seed of alice")
	if err := id.SealSecret("proxy", "users", secret); err != nil {
		t.Fatal(err)
	}
	id.Close()
	sw.Stop()

	// Reboot into the same image: the data key unseals, the secret opens.
	sw = swtpmtest.Start(t, sw.StateDir)
	id = boot(t, cfg, sw, "image-A")
	defer id.Close()
	got, err := id.UnsealSecret("proxy", "users")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, secret) {
		t.Fatalf("unsealed %q, want %q", got, secret)
	}
	// The ciphertext on disk is not the secret.
	raw, _ := os.ReadFile(filepath.Join(cfg.StateDir, SecretsDir, "proxy", "users.cbor"))
	if bytes.Contains(raw, secret) {
		t.Fatal("secret stored in the clear")
	}
	if _, err := id.UnsealSecret("proxy", "nope"); !errors.Is(err, ErrSecretNotFound) {
		t.Fatalf("missing secret: got %v, want ErrSecretNotFound", err)
	}
	// The name is authenticated: a file copied under another name fails.
	os.WriteFile(filepath.Join(cfg.StateDir, SecretsDir, "proxy", "copy.cbor"), raw, 0o600)
	if _, err := id.UnsealSecret("proxy", "copy"); !errors.Is(err, ErrStateCorrupt) {
		t.Fatalf("renamed secret: got %v, want ErrStateCorrupt", err)
	}
	if err := id.SealSecret("proxy", "../etc", secret); err == nil {
		t.Fatal("path traversal in a secret name accepted")
	}
}

func TestUnsealFailsAfterMeasuredPCRChanges(t *testing.T) {
	sw := swtpmtest.Start(t, "")
	cfg := testConfig(t, SocketTPM(sw.Socket))
	id := boot(t, cfg, sw, "image-A")
	if err := id.SealSecret("proxy", "users", []byte("x")); err != nil {
		t.Fatal(err)
	}
	id.Close()
	sw.Stop()

	// Reboot into another image: quarantine.
	sw = swtpmtest.Start(t, sw.StateDir)
	id = boot(t, cfg, sw, "image-B (tampered)")
	q := id.Quarantine()
	if q == nil {
		t.Fatal("no quarantine after the measured PCR changed")
	}
	t.Logf("quarantine reason: %s", q.Reason)
	t.Logf("quarantine remedy: %s", q.Remedy)
	var pe *PCRMismatchError
	if !errors.As(q.Err, &pe) || len(pe.Changes) != 1 || pe.Changes[0].PCR != MeasuredPCR || !pe.Changes[0].Measured {
		t.Fatalf("quarantine error %v: want exactly PCR %d changed", q.Err, MeasuredPCR)
	}
	if !errors.Is(q.Err, tpm2.TPMRCPolicyFail) {
		t.Fatalf("quarantine error %v: want the TPM's TPM_RC_POLICY_FAIL", q.Err)
	}
	if _, err := id.UnsealSecret("proxy", "users"); !errors.Is(err, ErrQuarantine) {
		t.Fatalf("unseal in quarantine: got %v, want ErrQuarantine", err)
	}
	if err := id.SealSecret("proxy", "users", []byte("y")); !errors.Is(err, ErrQuarantine) {
		t.Fatalf("seal in quarantine: got %v, want ErrQuarantine", err)
	}

	// The TPM itself refuses, not only our comparison: unseal directly.
	var rec sealRecord
	if err := readState(cfg.StateDir, SealFile, &rec); err != nil {
		t.Fatal(err)
	}
	_, err := unsealTPM(id.tpm, nil, &rec, "seal.cbor")
	if !errors.Is(err, tpm2.TPMRCPolicyFail) {
		t.Fatalf("direct TPM unseal with the wrong PCR: got %v, want TPM_RC_POLICY_FAIL", err)
	}
	t.Logf("TPM refused: %v", err)
	id.Close()
	sw.Stop()

	// Booting the approved image again leaves quarantine.
	sw = swtpmtest.Start(t, sw.StateDir)
	id = boot(t, cfg, sw, "image-A")
	defer id.Close()
	if q := id.Quarantine(); q != nil {
		t.Fatalf("still in quarantine on the approved image: %s", q.Reason)
	}
	if got, err := id.UnsealSecret("proxy", "users"); err != nil || string(got) != "x" {
		t.Fatalf("unseal after returning to the approved image: %q, %v", got, err)
	}
}

func TestSealPCRsRefusesResettable(t *testing.T) {
	for _, p := range []uint{16, 23, 24} {
		if _, err := sealPCRs([]uint{p}); err == nil {
			t.Errorf("PCR %d accepted", p)
		}
	}
	got, err := sealPCRs([]uint{7, 0, 7})
	if err != nil || len(got) != 3 || got[0] != 0 || got[1] != 7 || got[2] != MeasuredPCR {
		t.Fatalf("sealPCRs = %v, %v", got, err)
	}
}
