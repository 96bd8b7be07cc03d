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
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/otgate/otgate/audit"
	"github.com/otgate/otgate/inspect/modbus"
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

	// Damage: verify names the file and offset and fails. The byte is
	// flipped in record 2 (a byte of the file's last record would read as
	// a torn tail: see TestAuditVerifyStrict).
	es := readEntries(t, logDir)
	f := filepath.Join(logDir, audit.FileName(0))
	b, _ := os.ReadFile(f)
	b[es[2].Offset+es[2].Size/2] ^= 1
	os.WriteFile(f, b, 0o600)
	out.Reset()
	err = runAudit([]string{"verify", "--key", keyPath, logDir}, &out)
	if want := fmt.Sprintf("first bad record: %s offset %d (the record after seq 1)", audit.FileName(0), es[2].Offset); err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("verify of a damaged log: %v, want %q", err, want)
	}
}

func readEntries(t *testing.T, dir string) []audit.Entry {
	t.Helper()
	r, err := audit.NewReader(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var es []audit.Entry
	for {
		e, err := r.Next()
		if err == io.EOF {
			return es
		}
		if err != nil {
			t.Fatal(err)
		}
		es = append(es, e)
	}
}

// TestAuditShowModbusTranscript: a Modbus payload stores fields only; show
// renders the inspector's line with the user and asset of its session's
// start record. A record from before the fields, carrying its line in
// Detail["text"], still shows that line.
func TestAuditShowModbusTranscript(t *testing.T) {
	logDir := filepath.Join(t.TempDir(), "log")
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	w, err := audit.Open(logDir, key, audit.WithLogID("cli"))
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 22, 14, 3, 4, 120e6, time.UTC)
	ctx := context.Background()
	write := modbus.Record{RequestTime: at, ResponseTime: at.Add(1200 * time.Microsecond), TransactionID: 9, Unit: 1,
		Function: modbus.FuncWriteSingleRegister, Table: modbus.TableHoldingRegisters, Address: 52, Count: 1,
		Written: []byte{0, 55}, Verdict: modbus.VerdictAllowed, Outcome: modbus.OutcomeOK}
	denied := modbus.Record{RequestTime: at.Add(time.Second), ResponseTime: at.Add(time.Second + 30*time.Microsecond), TransactionID: 10, Unit: 1,
		Function: modbus.FuncWriteSingleRegister, Table: modbus.TableHoldingRegisters, Address: 60, Count: 1,
		Written: []byte{0, 1}, Verdict: modbus.VerdictDenied, Outcome: modbus.OutcomeException,
		Exception: modbus.ExIllegalDataAddress, DenyException: modbus.ExIllegalDataAddress, Reason: "outside write ranges 50-55"}
	old := audit.Payload{SessionID: "7f3a", First: audit.TimestampOf(at), Direction: audit.ToAsset, Decoded: &audit.Decoded{
		Protocol: "modbus", Unit: 1, Function: 3, Outcome: "ok", Detail: map[string]string{"text": "14:03:00.000 alice plc-7 unit 1 read holding 0 -> ok = 1 (0.5 ms)"}}}
	bodies := []audit.Body{
		audit.SessionStart{SessionID: "7f3a", User: "alice", Asset: "plc-7", Protocol: "modbus", Rule: "eng-day"},
		audit.SessionStart{SessionID: "8b21", User: "bob", Asset: "rtu-2", Protocol: "modbus", Rule: "eng-day"},
		old,
		modbus.AuditPayload("7f3a", &write, nil),
		modbus.AuditPayload("8b21", &write, nil),
		modbus.AuditPayload("7f3a", &denied, nil),
		audit.SessionEnd{SessionID: "7f3a", Reason: "client closed"},
	}
	for _, b := range bodies {
		if _, err := w.Append(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := runAudit([]string{"show", "--session", "7f3a", logDir}, &out); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	want := []string{
		"14:03:00.000 alice plc-7 unit 1 read holding 0 -> ok = 1 (0.5 ms)",
		"14:03:04.120 alice plc-7 unit 1 write holding 52 = 55 -> ok (1.2 ms)",
		"14:03:05.120 alice plc-7 unit 1 write holding 60 = 1 -> denied, exception 02 illegal data address: outside write ranges 50-55",
	}
	if len(lines) != 5 || !strings.Contains(lines[0], "session 7f3a start alice") || !strings.Contains(lines[4], "session 7f3a end") ||
		strings.Join(lines[1:4], "\n") != strings.Join(want, "\n") {
		t.Fatalf("show --session 7f3a:\n%s\nwant the start, then\n%s\nthen the end", out.String(), strings.Join(want, "\n"))
	}
	out.Reset()
	if err := runAudit([]string{"show", "--session", "8b21", logDir}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "\n14:03:04.120 bob rtu-2 unit 1 write holding 52 = 55 -> ok (1.2 ms)\n") {
		t.Fatalf("show --session 8b21 (bob's session):\n%s", out.String())
	}
}

// TestAuditVerifyStrict: a cleanly closed log passes --strict; the newest
// file cut at a record boundary (the seal's checkpoint gone) or mid-record
// is reported as not sealed, passes without --strict and fails with it,
// naming the file and the offset.
func TestAuditVerifyStrict(t *testing.T) {
	dir := t.TempDir()
	logDir := filepath.Join(dir, "log")
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	w, err := audit.Open(logDir, key, audit.WithLogID("cli"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := w.Append(ctx, audit.SessionStart{SessionID: "s1", User: "alice", Asset: "plc-7", Protocol: "modbus", Rule: "eng-day"}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Append(ctx, audit.SessionEnd{SessionID: "s1", Reason: "client closed"}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Checkpoint(ctx); err != nil { // signs the session, whether or not its own checkpoint ran yet
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	keyPath := filepath.Join(dir, "pub.pem")
	os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600)

	var out bytes.Buffer
	if err := runAudit([]string{"verify", "--strict", "--key", keyPath, logDir}, &out); err != nil {
		t.Fatalf("--strict on a cleanly closed log: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "end: sealed") || !strings.HasSuffix(out.String(), "\nOK\n") {
		t.Fatalf("verify --strict output:\n%s", out.String())
	}

	es := readEntries(t, logDir)
	seal := es[len(es)-1] // the checkpoint signing the log-closed record
	closed := es[len(es)-2]
	name := audit.FileName(0)
	full, _ := os.ReadFile(filepath.Join(logDir, name))
	for _, tc := range []struct {
		name   string
		cut    int64
		output string // in the output without --strict
		where  string // in the --strict error
	}{
		{"cut at a record boundary", seal.Offset, fmt.Sprintf("UNVERIFIED: 1 records from seq %d on", closed.Record.Seq),
			fmt.Sprintf("%s offset %d seq %d: log not sealed", name, closed.Offset, closed.Record.Seq)},
		{"cut mid-record", seal.Offset + 11, "NOT sealed, torn tail",
			fmt.Sprintf("%s offset %d (the record after seq %d): log not sealed", name, seal.Offset, closed.Record.Seq)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cut := filepath.Join(t.TempDir(), "log")
			os.Mkdir(cut, 0o700)
			os.WriteFile(filepath.Join(cut, name), full[:tc.cut], 0o600)
			out.Reset()
			if err := runAudit([]string{"verify", "--key", keyPath, cut}, &out); err != nil {
				t.Fatalf("without --strict: %v\n%s", err, out.String())
			}
			if !strings.Contains(out.String(), tc.output) || !strings.Contains(out.String(), "end: NOT sealed") ||
				!strings.HasSuffix(out.String(), "NOT sealed (--strict makes this an error)\n") {
				t.Fatalf("without --strict, want %q and an unsealed end in:\n%s", tc.output, out.String())
			}
			out.Reset()
			err := runAudit([]string{"verify", "--strict", "--key", keyPath, cut}, &out)
			if err == nil || !strings.Contains(err.Error(), tc.where) {
				t.Fatalf("--strict: %v, want it to contain %q\n%s", err, tc.where, out.String())
			}
			t.Log(err)
		})
	}
}
