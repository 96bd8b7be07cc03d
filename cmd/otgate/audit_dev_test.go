package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/otgate/otgate/audit"
)

// A log a gate without a TPM wrote in dev mode: verify says so and fails
// under --strict, show marks every line; a log that mixes dev-mode and
// TPM records is reported as mixed.
func TestAuditDevMode(t *testing.T) {
	dir := t.TempDir()
	logDir := filepath.Join(dir, "log")
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	write := func(opts ...audit.Option) {
		t.Helper()
		w, err := audit.Open(logDir, key, append([]audit.Option{audit.WithLogID("cli")}, opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Append(context.Background(), audit.Event{Type: "login-failed", User: "mallory"}); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	write(audit.WithDevMode("identity service in dev mode"))
	n := len(readEntries(t, logDir)) // rotation, event, log-closed, checkpoint
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	keyPath := filepath.Join(dir, "pub.pem")
	os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600)

	devLine := fmt.Sprintf("DEV MODE: %d records signed with a software key (not a TPM)", n)
	var out bytes.Buffer
	if err := runAudit([]string{"verify", "--key", keyPath, logDir}, &out); err != nil {
		t.Fatalf("verify: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), devLine+"\n") || strings.Contains(out.String(), "MIXED") ||
		!strings.HasSuffix(out.String(), "OK as a DEV MODE log: signed with a software key, not a TPM (--strict makes this an error)\n") {
		t.Fatalf("verify output, want %q:\n%s", devLine, out.String())
	}
	out.Reset()
	err := runAudit([]string{"verify", "--strict", "--key", keyPath, logDir}, &out)
	if err == nil || !strings.Contains(err.Error(), devLine) {
		t.Fatalf("verify --strict of a dev-mode log: %v, want an error saying %q\n%s", err, devLine, out.String())
	}
	t.Log(err)

	out.Reset()
	if err := runAudit([]string{"show", logDir}, &out); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != n {
		t.Fatalf("show: %d lines for %d records:\n%s", len(lines), n, out.String())
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, "[DEV] ") {
			t.Errorf("show line not marked [DEV]: %q", l)
		}
	}

	// The same log reopened by a gate with a TPM (same key here, so the
	// signatures verify): mixed.
	write()
	out.Reset()
	if err := runAudit([]string{"verify", "--key", keyPath, logDir}, &out); err != nil {
		t.Fatalf("verify of a mixed log: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), devLine+"; MIXED log: dev-mode records (seq 0 to 3) and 3 records not marked dev") {
		t.Fatalf("mixed log not reported as such:\n%s", out.String())
	}
	out.Reset()
	if err := runAudit([]string{"show", logDir}, &out); err != nil {
		t.Fatal(err)
	}
	lines = strings.Split(strings.TrimSpace(out.String()), "\n")
	for i, l := range lines {
		if dev := strings.HasPrefix(l, "[DEV] "); dev != (i < n) {
			t.Errorf("show line %d marked %v, want %v: %q", i, dev, i < n, l)
		}
	}
}
