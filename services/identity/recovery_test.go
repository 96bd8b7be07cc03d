package identity

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
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

// A reseal cut before its new seal is in place leaves the old seal, so
// the gate is still sealed to the image it was sealed to. Booting that
// image again (the break-glass step "the change is not intended") must
// find the identity as it was: the workload CA and the secrets still
// under the old data key. The reseal had already moved the secrets aside
// and replaced the workload CA under the new data key, so the approved
// image did not start (workload CA corrupt) and every secret was gone. A
// cut after the new seal is in place is completed by the next start: the
// resealed image boots with a workload CA under the new data key.
func TestResealCutThenTheApprovedImageBoots(t *testing.T) {
	for _, step := range atomicfile.Steps {
		t.Run(step.String(), func(t *testing.T) {
			sw := swtpmtest.Start(t, "")
			cfg := testConfig(t, SocketTPM(sw.Socket))
			id := boot(t, cfg, sw, "image-A")
			if err := id.SealSecret("proxy", "users", []byte("old")); err != nil {
				t.Fatal(err)
			}
			id.Close()
			reboot := func(booted string) *Identity {
				t.Helper()
				sw.Stop()
				sw = swtpmtest.Start(t, sw.StateDir)
				return boot(t, cfg, sw, booted)
			}
			if id = reboot("image-B"); id.Quarantine() == nil {
				t.Fatal("image-B: no quarantine")
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
			committed := step >= atomicfile.StepRename
			if step == atomicfile.StepSyncDir {
				// And a cut inside the completion, after the old secrets
				// were moved aside.
				if err := os.Rename(filepath.Join(cfg.StateDir, SecretsDir), filepath.Join(cfg.StateDir, SecretsDir+".unsealable-cut")); err != nil {
					t.Fatal(err)
				}
			}
			booted, secret := "image-A", "old"
			if committed {
				booted, secret = "image-B", ""
			}
			id = reboot(booted)
			defer id.Close()
			if q := id.Quarantine(); q != nil {
				t.Fatalf("%s after a reseal cut after %s: quarantine: %s", booted, step, q.Reason)
			}
			got, err := id.UnsealSecret("proxy", "users")
			switch {
			case secret != "" && (err != nil || string(got) != secret):
				t.Fatalf("%s: secret %q, %v, want %q", booted, got, err, secret)
			case secret == "" && !errors.Is(err, ErrSecretNotFound):
				t.Fatalf("%s: secret of the old data key: %q, %v, want not found", booted, got, err)
			}
			if _, _, err := id.IssueWorkloadCertificate("proxy", testCSR(t), time.Minute); err != nil {
				t.Fatalf("%s: workload certificate: %v", booted, err)
			}
			if _, err := os.Stat(filepath.Join(cfg.StateDir, ResealPendingDir)); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("%s: the reseal's staging is still there: %v", booted, err)
			}
			if committed {
				old, _ := filepath.Glob(filepath.Join(cfg.StateDir, SecretsDir+".unsealable-*", "proxy", "users.cbor"))
				if len(old) != 1 {
					t.Fatalf("%s: old secrets moved aside: %v", booted, old)
				}
			}
		})
	}
}

// testCSR is a certificate request for a fresh P-256 key.
func testCSR(t *testing.T) []byte {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, k)
	if err != nil {
		t.Fatal(err)
	}
	return csr
}
