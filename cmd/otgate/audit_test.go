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
	"strings"
	"testing"
	"time"

	"github.com/otgate/otgate/audit"
)

func TestAuditVerifyAndShow(t *testing.T) {
	dir := t.TempDir()
	logDir := filepath.Join(dir, "log")
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	clock := time.Date(2026, 11, 22, 14, 3, 4, 120e6, time.UTC)
	w, err := audit.Open(logDir, key, audit.WithLogID("cli"), audit.WithClock(func() time.Time { return clock }))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, id := range []string{"7f3a", "8b21"} {
		if _, err := w.Append(ctx, audit.SessionStart{SessionID: id, User: "alice", Asset: "plc-7", Protocol: "modbus", Rule: "eng-day",
			ValidUntil: audit.TimestampOf(time.Date(2026, 11, 22, 16, 0, 0, 0, time.UTC))}); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Append(ctx, audit.Payload{SessionID: id, Direction: audit.ToAsset, Bytes: 12, Raw: []byte{0, 1, 0, 0, 0, 6, 1, 3, 0, 0, 0, 10}}); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Append(ctx, audit.SessionEnd{SessionID: id, Reason: "client closed", BytesToAsset: 12}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	keyPath := filepath.Join(dir, "pub.pem")
	os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600)

	var out bytes.Buffer
	if err := runAudit([]string{"verify", "--key", keyPath, logDir}, &out); err != nil {
		t.Fatalf("verify: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "signatures good") || !strings.HasSuffix(out.String(), "OK\n") {
		t.Fatalf("verify output:\n%s", out.String())
	}
	if err := runAudit([]string{"verify", logDir}, &out); err == nil {
		t.Fatal("verify without a key or --chain-only must fail")
	}

	out.Reset()
	if err := runAudit([]string{"show", "--session", "7f3a", logDir}, &out); err != nil {
		t.Fatal(err)
	}
	want := []string{
		`2026-11-22T14:03:04.120Z #1 session 7f3a start alice -> plc-7 (modbus) rule "eng-day" until 16:00`,
		`2026-11-22T14:03:04.120Z #2 session 7f3a -> 12 bytes 00 01 00 00 00 06 01 03 00 00 00 0a`,
		`2026-11-22T14:03:04.120Z #3 session 7f3a end client closed (-> 12 B, <- 0 B)`,
	}
	if got := strings.TrimSpace(out.String()); got != strings.Join(want, "\n") {
		t.Fatalf("show --session 7f3a:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}

	// Damage: verify names the file and offset and fails.
	f := filepath.Join(logDir, audit.FileName(0))
	b, _ := os.ReadFile(f)
	b[len(b)/2] ^= 1
	os.WriteFile(f, b, 0o600)
	out.Reset()
	err = runAudit([]string{"verify", "--key", keyPath, logDir}, &out)
	if err == nil || !strings.Contains(err.Error(), "first bad record: "+audit.FileName(0)+" offset") {
		t.Fatalf("verify of a damaged log: %v", err)
	}
}
