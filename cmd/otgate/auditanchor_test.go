package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/otgate/otgate/audit"
	"github.com/otgate/otgate/services/identity"
	"github.com/otgate/otgate/services/identity/api"
	"github.com/otgate/otgate/services/identity/swtpmtest"
)

// socketAnchor anchors a log to the identity service's TPM counter, as
// the proxy does.
type socketAnchor struct{ c *api.Client }

func (a socketAnchor) Read() (uint64, bool, error) { return a.c.AuditAnchor() }
func (a socketAnchor) Advance(from uint64, defined bool) (uint64, error) {
	return a.c.AdvanceAuditAnchor(from, defined)
}

// `otgate identity status` prints the TPM's audit anchor counter, and
// `otgate audit verify --anchor N` passes the log anchored to it and fails
// a copy taken before its last run, naming the rollback; a bad --anchor
// value is refused.
func TestAuditVerifyAnchor(t *testing.T) {
	sw := swtpmtest.Start(t, "")
	dir := t.TempDir()
	id, err := identity.Open(identity.Config{StateDir: filepath.Join(dir, "identity"), Site: "plant.example", TPM: identity.SocketTPM(sw.Socket), Create: true, Log: &bytes.Buffer{}})
	if err != nil {
		t.Fatal(err)
	}
	defer id.Close()
	sockDir, err := os.MkdirTemp("", "anchor")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(sockDir)
	sock := filepath.Join(sockDir, "id.sock")
	srv, err := identity.Listen(id, identity.ServerConfig{Socket: sock, GID: -1, Allow: map[uint32]string{uint32(os.Geteuid()): "proxy"}})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	defer srv.Close()
	c, err := api.Dial(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	logDir := filepath.Join(dir, "audit")
	run := func() {
		t.Helper()
		w, err := audit.Open(logDir, id.Signer(), audit.WithAnchor(socketAnchor{c}))
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	run()
	old := filepath.Join(dir, "audit-copy")
	copyLogDir(t, logDir, old)
	run()

	var st bytes.Buffer
	if err := identityStatus(sock, &st); err != nil {
		t.Fatal(err)
	}
	v, _, err := c.AuditAnchor()
	if err != nil {
		t.Fatal(err)
	}
	n := strconv.FormatUint(v, 10)
	if !strings.Contains(st.String(), "audit anchor: "+n+" (TPM counter") {
		t.Fatalf("identity status does not show the anchor %s:\n%s", n, st.String())
	}

	der, _ := x509.MarshalPKIXPublicKey(id.Signer().Public())
	keyPath := filepath.Join(dir, "pub.pem")
	os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600)
	var out bytes.Buffer
	if err := runAudit([]string{"verify", "--strict", "--key", keyPath, "--anchor", n, logDir}, &out); err != nil {
		t.Fatalf("verify of the anchored log: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "anchor: last anchored at "+n) {
		t.Fatalf("verify output:\n%s", out.String())
	}
	out.Reset()
	err = runAudit([]string{"verify", "--strict", "--key", keyPath, "--anchor", n, old}, &out)
	if err == nil || !strings.Contains(err.Error(), "rolled back") || !strings.Contains(err.Error(), "counter is at "+n) {
		t.Fatalf("verify of the earlier copy: %v, want a rollback\n%s", err, out.String())
	}
	if err := runAudit([]string{"verify", "--key", keyPath, "--anchor", "ten", logDir}, &out); err == nil || !strings.Contains(err.Error(), `--anchor "ten"`) {
		t.Fatalf("bad --anchor: %v", err)
	}
}

// A log the gate pruned verifies without --allow-partial, and verify says
// how many files the gate removed; a log missing a file no record names
// fails.
func TestAuditVerifyPrunedLog(t *testing.T) {
	dir := t.TempDir()
	logDir := filepath.Join(dir, "audit")
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	w, err := audit.Open(logDir, key, audit.WithMaxFileSize(2<<10), audit.WithCheckpointEvery(3), audit.WithRetention(audit.Retention{MaxBytes: 8 << 10}))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := 0; i < 60; i++ {
		id := strconv.Itoa(i)
		if _, err := w.Append(ctx, audit.SessionStart{SessionID: id, User: "alice", Asset: "plc-7", Protocol: "modbus", Rule: "r"}); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Append(ctx, audit.SessionEnd{SessionID: id, Reason: "client closed"}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(logDir, audit.FileName(0))); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the retention never removed file 0")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	keyPath := filepath.Join(dir, "pub.pem")
	os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600)
	var out bytes.Buffer
	if err := runAudit([]string{"verify", "--strict", "--key", keyPath, logDir}, &out); err != nil {
		t.Fatalf("verify of a pruned log: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "retention: the gate removed the ") {
		t.Fatalf("verify output:\n%s", out.String())
	}
	ents, _ := os.ReadDir(logDir)
	os.Remove(filepath.Join(logDir, ents[0].Name()))
	if err := runAudit([]string{"verify", "--key", keyPath, logDir}, &out); err == nil || !strings.Contains(err.Error(), "no log-pruned record of this log names them") {
		t.Fatalf("verify of a log missing an unrecorded file: %v", err)
	}
}

// The usage of otgate audit names --anchor, like every other flag of
// verify.
func TestAuditUsageNamesAnchor(t *testing.T) {
	err := runAudit(nil, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "[--anchor N|device]") {
		t.Fatalf("usage %v, want --anchor in it", err)
	}
}

// copyLogDir copies a log directory (as someone with the disk would keep
// a copy of it).
func copyLogDir(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
}
