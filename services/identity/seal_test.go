package identity

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
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
	// Neither the refused unseal nor Open's leaves a session or an object
	// loaded: the device key is the only transient object.
	if n := loadedHandles(t, id.tpm, tpm2.TPMHandle(0x02000000)); n != 0 {
		t.Errorf("%d policy/HMAC sessions left loaded after refused unseals", n)
	}
	if n := loadedHandles(t, id.tpm, tpm2.TPMHandle(0x80000000)); n != 1 {
		t.Errorf("%d transient objects loaded, want 1 (the device key)", n)
	}
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

// loadedHandles counts the TPM's handles from first (0x02000000 loaded
// sessions, 0x80000000 transient objects) to the end of that range.
func loadedHandles(t *testing.T, tpm transport.TPM, first tpm2.TPMHandle) int {
	t.Helper()
	rsp, err := tpm2.GetCapability{Capability: tpm2.TPMCapHandles, Property: uint32(first), PropertyCount: 64}.Execute(tpm)
	if err != nil {
		t.Fatal(err)
	}
	hs, err := rsp.CapabilityData.Data.Handles()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, h := range hs.Handle {
		if h>>24 == first>>24 {
			n++
		}
	}
	return n
}

// A seal record whose PCR values were edited no longer matches the policy
// of the sealed object it carries: Open refuses it as corrupt, naming the
// file, and does not enter quarantine or touch the TPM's PCRs.
func TestEditedSealedPCRValuesAreCorrupt(t *testing.T) {
	sw := swtpmtest.Start(t, "")
	cfg := testConfig(t, SocketTPM(sw.Socket))
	id := boot(t, cfg, sw, "image-A")
	id.Close()
	var rec sealRecord
	if err := readState(cfg.StateDir, SealFile, &rec); err != nil {
		t.Fatal(err)
	}
	rec.PCRValues[0] = bytes.Repeat([]byte{0xAB}, len(rec.PCRValues[0]))
	if err := os.WriteFile(filepath.Join(cfg.StateDir, SealFile), mustEncode(&rec), 0o600); err != nil {
		t.Fatal(err)
	}
	tpm, err := SocketTPM(sw.Socket).Open()
	if err != nil {
		t.Fatal(err)
	}
	_, err = unsealDataKey(tpm, nil, &rec, filepath.Join(cfg.StateDir, SealFile))
	tpm.Close() // swtpm serves one connection at a time
	if !errors.Is(err, ErrStateCorrupt) || !strings.Contains(err.Error(), "is not the PCR policy") || !strings.Contains(err.Error(), SealFile) {
		t.Fatalf("edited PCR values: %v, want ErrStateCorrupt naming %s", err, SealFile)
	}
	cfg.TPM = SocketTPM(sw.Socket)
	if _, err := Open(cfg); !errors.Is(err, ErrStateCorrupt) {
		t.Fatalf("Open with edited PCR values: %v, want ErrStateCorrupt", err)
	}
}

// The directories a secret's file goes into are made durable in their
// parents before the file is written: the state directory is synced after
// secrets/ is created in it, secrets/ after secrets/<owner>/.
func TestNewSecretDirectoriesAreSyncedInTheirParents(t *testing.T) {
	dir := t.TempDir()
	var synced []string
	dirSynced = func(d string) { synced = append(synced, d) }
	defer func() { dirSynced = nil }()
	k := &dataKey{b: make([]byte, dataKeySize)}
	if err := sealSecret(dir, k, "proxy", "users", []byte("x")); err != nil {
		t.Fatal(err)
	}
	secrets := filepath.Join(dir, SecretsDir)
	want := []string{dir, secrets, filepath.Join(secrets, "proxy")}
	if !slices.Equal(synced, want) {
		t.Fatalf("synced %v, want %v (each new directory in its parent, then the file's)", synced, want)
	}
	// A second owner: only secrets/ (its new entry) and the new directory.
	synced = nil
	if err := sealSecret(dir, k, "admin", "x", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if want := []string{secrets, filepath.Join(secrets, "admin")}; !slices.Equal(synced, want) {
		t.Fatalf("second owner: synced %v, want %v", synced, want)
	}
	if got, err := openSecret(dir, k, "proxy", "users"); err != nil || string(got) != "x" {
		t.Fatalf("open: %q %v", got, err)
	}
}
