package identity

import (
	"crypto/ecdsa"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/otgate/otgate/services/identity/swtpmtest"
)

func TestResealLeavesQuarantineKeepingTheDevice(t *testing.T) {
	sw := swtpmtest.Start(t, "")
	cfg := testConfig(t, SocketTPM(sw.Socket))
	id := boot(t, cfg, sw, "image-A")
	pub := id.Signer().Public().(*ecdsa.PublicKey)
	id.SealSecret("proxy", "users", []byte("old"))
	id.Close()

	// Not in quarantine: reseal refuses (it would only destroy secrets).
	if _, err := Reseal(cfg); err == nil {
		t.Fatal("reseal outside quarantine succeeded")
	}
	sw.Stop()
	sw = swtpmtest.Start(t, sw.StateDir)
	id = boot(t, cfg, sw, "image-B")
	if id.Quarantine() == nil {
		t.Fatal("no quarantine")
	}
	id.Close()
	cfg.TPM = SocketTPM(sw.Socket)
	moved, err := Reseal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(moved, "proxy", "users.cbor")); err != nil {
		t.Fatalf("old secrets not moved aside: %v", err)
	}
	id, err = Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer id.Close()
	if q := id.Quarantine(); q != nil {
		t.Fatalf("still in quarantine after reseal: %s", q.Reason)
	}
	if !id.Signer().Public().(*ecdsa.PublicKey).Equal(pub) {
		t.Fatal("reseal changed the device key")
	}
	if _, err := id.UnsealSecret("proxy", "users"); !errors.Is(err, ErrSecretNotFound) {
		t.Fatalf("old secret after reseal: %v, want not found", err)
	}
	if err := id.SealSecret("proxy", "users", []byte("new")); err != nil {
		t.Fatal(err)
	}
}

func TestResetCreatesANewIdentityAndKeepsTheOld(t *testing.T) {
	_, opener := startTPM(t)
	cfg := testConfig(t, opener)
	id, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	pub := id.Signer().Public().(*ecdsa.PublicKey)
	id.Close()
	os.Remove(filepath.Join(cfg.StateDir, KeyFile)) // broken: Open refuses
	if _, err := Open(cfg); !errors.Is(err, ErrStateMissing) {
		t.Fatalf("got %v, want ErrStateMissing", err)
	}
	old, err := Reset(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(old, DeviceFile)); err != nil {
		t.Fatalf("old identity not kept in %s: %v", old, err)
	}
	id, err = Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer id.Close()
	if id.Signer().Public().(*ecdsa.PublicKey).Equal(pub) {
		t.Fatal("reset kept the old key")
	}
	if id.device.ReplacedIdentity != filepath.Base(old) {
		t.Fatalf("new identity records replacing %q, want %q", id.device.ReplacedIdentity, filepath.Base(old))
	}
}
