package main

import (
	"bytes"
	"crypto/sha256"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/otgate/otgate/internal/bootcfg"
	"github.com/otgate/otgate/services/identity"
	"github.com/otgate/otgate/services/identity/swtpmtest"
)

// serveIdentity opens the identity on sw after extending the boot PCR
// with image (as init does) and serves its socket until the test ends.
func serveIdentity(t *testing.T, sw *swtpmtest.TPM, state, sock, image string) {
	t.Helper()
	cfg, err := identityFlags(t, sw.Socket, state).Config(true, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	tpm, err := cfg.TPM.Open()
	if err != nil {
		t.Fatal(err)
	}
	if err := identity.ExtendBootMeasurement(tpm, sha256.Sum256([]byte(image))); err != nil {
		t.Fatal(err)
	}
	tpm.Close()
	id, err := identity.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := identity.Listen(id, identity.ServerConfig{Socket: sock, GID: -1, Allow: map[uint32]string{uint32(os.Getuid()): "admin"}})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	t.Cleanup(func() { srv.Close(); id.Close() })
}

// trustFixture: a fresh swtpm, an identity state directory and a short
// directory for the socket (unix socket paths are limited to 108 bytes).
func trustFixture(t *testing.T) (sw *swtpmtest.TPM, state, sockDir string) {
	t.Helper()
	sw = swtpmtest.Start(t, "")
	state = filepath.Join(t.TempDir(), "identity")
	sockDir, err := os.MkdirTemp("", "trust")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	return sw, state, sockDir
}

// The trust gate passes a gate that unseals, and stops one in quarantine
// with the reason, the remedy and the no-restart exit status.
func TestIdentityCheckTrust(t *testing.T) {
	sw, state, sockDir := trustFixture(t)
	sock := filepath.Join(sockDir, "id.sock")

	serveIdentity(t, sw, state, sock, "image-A")
	var out bytes.Buffer
	exited := -1
	exit := func(code int) { exited = code }
	var notes []string
	note := func(s string) error { notes = append(notes, s); return nil }
	if err := identityCheckTrust(sock, 0, &out, exit, note); err != nil || exited != -1 || !strings.Contains(out.String(), "is not in quarantine") {
		t.Fatalf("trusted gate: err %v, exit %d, output %q", err, exited, out.String())
	}

	// Reboot into another image: quarantine.
	sw.Stop()
	sw = swtpmtest.Start(t, sw.StateDir)
	serveIdentity(t, sw, state, sock, "image-B")
	out.Reset()
	if len(notes) != 0 {
		t.Fatalf("trusted gate sent init notes %q", notes)
	}
	if err := identityCheckTrust(sock, 0, &out, exit, note); err != nil || exited != bootcfg.ExitNoRestart {
		t.Fatalf("quarantined gate: err %v, exit %d, output %q", err, exited, out.String())
	}
	for _, want := range []string{"trust: GATE IN QUARANTINE: ", "PCR 15", "trust: what to do: ", "the proxy and everything that depends on"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	// The note init shows in `otgate status` says why and what to do, on
	// one line.
	if len(notes) != 1 {
		t.Fatalf("quarantine: notes to init %q, want one", notes)
	}
	for _, want := range []string{"QUARANTINE: ", "PCR 15", " -- what to do: ", "boot the approved image", "otgate identity reseal -yes", "services/identity/README.md"} {
		if !strings.Contains(notes[0], want) {
			t.Errorf("status note lacks %q: %s", want, notes[0])
		}
	}
	if !strings.HasPrefix(notes[0], "QUARANTINE: ") || strings.Contains(notes[0], "\n") {
		t.Errorf("status note is not one line starting QUARANTINE: %q", notes[0])
	}
	t.Logf("status note: %s", notes[0])

	// No identity service: an error (init retries with back-off), not a pass.
	if err := identityCheckTrust(filepath.Join(sockDir, "none.sock"), 0, &out, exit, note); err == nil {
		t.Fatal("check-trust passed without an identity service")
	}
	// Waiting for one that never comes: not trusted, no restart.
	exited = -1
	out.Reset()
	notes = nil
	if err := identityCheckTrust(filepath.Join(sockDir, "none.sock"), 300*time.Millisecond, &out, exit, note); err != nil || exited != bootcfg.ExitNoRestart ||
		!strings.Contains(out.String(), "trust: NOT TRUSTED: the identity service did not answer within 300ms") {
		t.Fatalf("no identity with -wait: err %v, exit %d, output %q", err, exited, out.String())
	}
	if len(notes) != 1 || !strings.HasPrefix(notes[0], "NOT TRUSTED: the identity service did not answer") {
		t.Errorf("no identity: notes to init %q", notes)
	}
}

// Started beside identity (as init does), check-trust waits for it to
// answer and then judges what it says.
func TestIdentityCheckTrustWaits(t *testing.T) {
	sw, state, sockDir := trustFixture(t)
	sock := filepath.Join(sockDir, "id.sock")

	type result struct {
		err    error
		exited int
		out    string
	}
	done := make(chan result, 1)
	go func() {
		var out bytes.Buffer
		exited := -1
		err := identityCheckTrust(sock, time.Minute, &out, func(code int) { exited = code }, func(string) error { return nil })
		done <- result{err, exited, out.String()}
	}()
	time.Sleep(200 * time.Millisecond) // let it find no socket first
	select {
	case r := <-done:
		t.Fatalf("check-trust returned before identity served: %+v", r)
	default:
	}
	serveIdentity(t, sw, state, sock, "image-A")
	r := <-done
	if r.err != nil || r.exited != -1 || !strings.Contains(r.out, "is not in quarantine") {
		t.Fatalf("waited for a trusted gate: %+v", r)
	}
}
