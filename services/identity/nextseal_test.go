package identity

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/otgate/otgate/internal/atomicfile"
	"github.com/otgate/otgate/services/identity/api"
	"github.com/otgate/otgate/services/identity/swtpmtest"
)

// An authorized change (SealNextBoot with the next boot's measurement)
// keeps the data key across the reboot into the new configuration; the old
// configuration still unseals until then; any other configuration
// (an offline edit) is quarantined.
func TestSealNextBootAuthorizedChange(t *testing.T) {
	sw := swtpmtest.Start(t, "")
	cfg := testConfig(t, SocketTPM(sw.Socket))
	secret := []byte("user store key")
	id := boot(t, cfg, sw, "config-A")
	if err := id.SealSecret("proxy", "users", secret); err != nil {
		t.Fatal(err)
	}
	if err := id.SealNextBoot(sha256.Sum256([]byte("config-B"))); err != nil {
		t.Fatal(err)
	}
	id.Close()
	next := filepath.Join(cfg.StateDir, NextSealFile)

	reboot := func(booted string) *Identity {
		t.Helper()
		sw.Stop()
		sw = swtpmtest.Start(t, sw.StateDir)
		return boot(t, cfg, sw, booted)
	}
	healthy := func(id *Identity, what string) {
		t.Helper()
		defer id.Close()
		if q := id.Quarantine(); q != nil {
			t.Fatalf("%s: quarantine: %s", what, q.Reason)
		}
		got, err := id.UnsealSecret("proxy", "users")
		if err != nil || !bytes.Equal(got, secret) {
			t.Fatalf("%s: secret %q, %v", what, got, err)
		}
	}
	quarantined := func(id *Identity, what string) {
		t.Helper()
		defer id.Close()
		if id.Quarantine() == nil {
			t.Fatalf("%s: not in quarantine", what)
		}
		if _, err := id.UnsealSecret("proxy", "users"); !errors.Is(err, ErrQuarantine) {
			t.Fatalf("%s: secret: %v, want ErrQuarantine", what, err)
		}
	}

	// The apply was cut short before the new policy was stored: the old
	// configuration boots, the pending slot is kept.
	healthy(reboot("config-A"), "old configuration with a pending slot")
	if _, err := os.Stat(next); err != nil {
		t.Fatalf("pending next-boot slot dropped by a boot of the old configuration: %v", err)
	}
	healthy(reboot("config-B"), "new configuration (promotes the next slot)")
	if _, err := os.Stat(next); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("next-boot slot not removed after promotion: %v", err)
	}
	healthy(reboot("config-B"), "new configuration again (promoted slot)")
	// The old slot is gone: going back without an apply is a tamper.
	quarantined(reboot("config-A"), "old configuration after promotion")
	quarantined(reboot("config-C"), "configuration never applied")
}

// A promotion cut short (seal.cbor replaced, seal-next.cbor still there)
// boots, and the leftover is removed.
func TestSealNextBootPromotionLeftover(t *testing.T) {
	sw := swtpmtest.Start(t, "")
	cfg := testConfig(t, SocketTPM(sw.Socket))
	id := boot(t, cfg, sw, "config-A")
	if err := id.SealNextBoot(sha256.Sum256([]byte("config-B"))); err != nil {
		t.Fatal(err)
	}
	id.Close()
	// What a cut after the promotion's rename leaves: both files hold the
	// same sealed object.
	b, err := os.ReadFile(filepath.Join(cfg.StateDir, NextSealFile))
	if err != nil {
		t.Fatal(err)
	}
	var rec sealRecord
	if err := decMode.Unmarshal(b, &rec); err != nil {
		t.Fatal(err)
	}
	rec.NextBootDigest = nil
	if err := os.WriteFile(filepath.Join(cfg.StateDir, SealFile), mustEncode(&rec), 0o600); err != nil {
		t.Fatal(err)
	}
	sw.Stop()
	sw = swtpmtest.Start(t, sw.StateDir)
	id = boot(t, cfg, sw, "config-B")
	defer id.Close()
	if q := id.Quarantine(); q != nil {
		t.Fatalf("quarantine: %s", q.Reason)
	}
	if _, err := os.Stat(filepath.Join(cfg.StateDir, NextSealFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("leftover next-boot slot kept: %v", err)
	}
}

// Sealing for the next boot needs the data key (not in quarantine) and
// root on the socket.
func TestSealNextBootRefusals(t *testing.T) {
	sw := swtpmtest.Start(t, "")
	cfg := testConfig(t, SocketTPM(sw.Socket))
	boot(t, cfg, sw, "config-A").Close()
	sw.Stop()
	sw = swtpmtest.Start(t, sw.StateDir)
	id := boot(t, cfg, sw, "config-tampered")
	defer id.Close()
	if err := id.SealNextBoot(sha256.Sum256([]byte("config-B"))); !errors.Is(err, ErrQuarantine) {
		t.Fatalf("in quarantine: %v, want ErrQuarantine", err)
	}
	if _, err := os.Stat(filepath.Join(cfg.StateDir, NextSealFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("quarantined gate wrote a next-boot slot: %v", err)
	}
	s := &Server{id: id}
	d := sha256.Sum256([]byte("config-B"))
	if rsp := s.handle("proxy", 101, &api.Request{Op: api.OpSealNextBoot, Digest: d[:]}); rsp.Code != api.CodeDenied {
		t.Fatalf("uid 101: %+v, want denied", rsp)
	}
	if rsp := s.handle("admin", 0, &api.Request{Op: api.OpSealNextBoot, Digest: d[:5]}); rsp.Code != api.CodeBadRequest {
		t.Fatalf("short digest: %+v, want bad-request", rsp)
	}
	if rsp := s.handle("admin", 0, &api.Request{Op: api.OpSealNextBoot, Digest: d[:]}); rsp.Code != api.CodeQuarantine {
		t.Fatalf("root in quarantine: %+v, want quarantine", rsp)
	}
}

// A boot of an applied configuration unseals from the next-boot slot and
// promotes it; when the promotion write fails (a write error, not a cut)
// the service runs on, its data key in seal-next.cbor only. A second
// authorized apply on that boot must not replace that slot with its own:
// an apply cut before the new policy is stored then left a boot of the
// configuration that was running with neither slot (quarantine, every
// secret out of reach until a reseal destroys them). The apply retries
// the promotion first, or is refused.
func TestSealNextBootAfterAFailedPromotion(t *testing.T) {
	sw := swtpmtest.Start(t, "")
	cfg := testConfig(t, SocketTPM(sw.Socket))
	secret := []byte("user store key")
	id := boot(t, cfg, sw, "config-A")
	if err := id.SealSecret("proxy", "users", secret); err != nil {
		t.Fatal(err)
	}
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

	// The boot into config-B: the promotion's write fails.
	failWrites := true
	cfg.StateWriteHook = func(s atomicfile.Step) error {
		if failWrites && s == atomicfile.StepCreateTemp {
			return errors.New("simulated write error")
		}
		return nil
	}
	id = reboot("config-B")
	if q := id.Quarantine(); q != nil {
		t.Fatalf("config-B: quarantine: %s", q.Reason)
	}
	if _, err := os.Stat(filepath.Join(cfg.StateDir, NextSealFile)); err != nil {
		t.Fatalf("the fixture's promotion did not fail: %v", err)
	}
	// The disk is writable again; an apply of config-C on this boot.
	failWrites = false
	if err := id.SealNextBoot(sha256.Sum256([]byte("config-C"))); err != nil {
		t.Logf("apply of config-C refused: %v", err)
	}
	id.Close()

	// The apply was cut before config-C was stored: config-B boots again.
	id = reboot("config-B")
	defer id.Close()
	if q := id.Quarantine(); q != nil {
		t.Fatalf("config-B again after an apply cut short: quarantine: %s", q.Reason)
	}
	if got, err := id.UnsealSecret("proxy", "users"); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("secret: %q, %v", got, err)
	}
}
