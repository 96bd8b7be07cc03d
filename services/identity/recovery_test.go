package identity

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/otgate/otgate/internal/atomicfile"
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

// A reseal cut at any step of its seal.cbor write leaves no next-boot slot
// of the old data key behind: left there, a later boot measuring the
// configuration it was sealed for promoted the old key over the new seal,
// and the workload CA and every secret no longer decrypted. A cut before
// the new seal is in place leaves quarantine, and reseal runs again.
func TestResealCutLeavesNoNextSlotOfTheOldKey(t *testing.T) {
	for _, step := range atomicfile.Steps {
		t.Run(step.String(), func(t *testing.T) {
			sw := swtpmtest.Start(t, "")
			cfg := testConfig(t, SocketTPM(sw.Socket))
			id := boot(t, cfg, sw, "image-A")
			// A policy applied on image-A whose boot never came.
			if err := id.SealNextBoot(sha256.Sum256([]byte("config-B"))); err != nil {
				t.Fatal(err)
			}
			id.Close()
			reboot := func(booted string) *Identity {
				t.Helper()
				sw.Stop()
				sw = swtpmtest.Start(t, sw.StateDir)
				return boot(t, cfg, sw, booted)
			}
			if id = reboot("image-C"); id.Quarantine() == nil {
				t.Fatal("image-C: no quarantine")
			}
			id.Close()
			c := cfg
			c.TPM = SocketTPM(sw.Socket)
			c.StateWriteHook = func(s atomicfile.Step) error {
				if s == step {
					return atomicfile.ErrCrash
				}
				return nil
			}
			if _, err := Reseal(c); !errors.Is(err, atomicfile.ErrCrash) {
				t.Fatalf("reseal: %v, want the simulated cut", err)
			}
			if _, err := os.Stat(filepath.Join(cfg.StateDir, NextSealFile)); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("cut after %s: the next-boot slot of the old data key is still there (%v)", step, err)
			}
			// The power comes back on image-C: quarantine (reseal again)
			// or resealed, as far as the cut got.
			id = reboot("image-C")
			if id.Quarantine() != nil {
				id.Close()
				c.StateWriteHook = nil
				c.TPM = SocketTPM(sw.Socket)
				// A later run: the first moved the secrets aside under
				// this second's name.
				c.Now = func() time.Time { return time.Now().Add(time.Minute) }
				if _, err := Reseal(c); err != nil {
					t.Fatalf("reseal again: %v", err)
				}
				id = reboot("image-C")
			}
			if q := id.Quarantine(); q != nil {
				t.Fatalf("after the reseal: quarantine: %s", q.Reason)
			}
			if err := id.SealSecret("proxy", "users", []byte("new")); err != nil {
				t.Fatal(err)
			}
			id.Close()
			// The configuration the old slot was for is now a tamper,
			// not a promotion of the old key.
			id = reboot("config-B")
			defer id.Close()
			if id.Quarantine() == nil {
				t.Fatal("config-B after the reseal: not in quarantine")
			}
		})
	}
}
