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
	"github.com/otgate/otgate/inspect/modbus"
)

// TestAuditShowWriteOnce: a write recorded before it was forwarded and
// again at its response is shown once, as its completed line; a write
// whose response was never recorded (the gate stopped in between: the log
// ends without the completion, unsealed) is shown as forwarded with no
// response recorded. The log verifies.
func TestAuditShowWriteOnce(t *testing.T) {
	dir := t.TempDir()
	logDir := filepath.Join(dir, "log")
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	w, err := audit.Open(logDir, key, audit.WithLogID("cli"))
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 22, 14, 3, 4, 120e6, time.UTC)
	write := func(tid uint16, at time.Time, addr uint16, v byte, o modbus.Outcome, verdict modbus.Verdict) modbus.Record {
		r := modbus.Record{RequestTime: at, TransactionID: tid, Unit: 1, Function: modbus.FuncWriteSingleRegister,
			Table: modbus.TableHoldingRegisters, Address: addr, Count: 1, Written: []byte{0, v}, Verdict: verdict, Outcome: o}
		if o == modbus.OutcomeOK {
			r.ResponseTime = at.Add(1200 * time.Microsecond)
		}
		if verdict == modbus.VerdictWouldDeny {
			r.DenyException, r.Reason = modbus.ExIllegalDataAddress, "outside write ranges 50-55"
		}
		return r
	}
	read := modbus.Record{RequestTime: at.Add(time.Second), ResponseTime: at.Add(time.Second + 800*time.Microsecond), TransactionID: 3, Unit: 1,
		Function: modbus.FuncReadHoldingRegisters, Table: modbus.TableHoldingRegisters, Address: 52, Count: 1,
		ReadValues: []byte{0, 55}, Verdict: modbus.VerdictAllowed, Outcome: modbus.OutcomeOK}
	recs := []modbus.Record{
		write(1, at, 52, 55, modbus.OutcomeForwarded, modbus.VerdictAllowed),
		write(1, at, 52, 55, modbus.OutcomeOK, modbus.VerdictAllowed),
		read,
		write(2, at.Add(2*time.Second), 60, 1, modbus.OutcomeForwarded, modbus.VerdictWouldDeny),
		write(2, at.Add(2*time.Second), 60, 1, modbus.OutcomeOK, modbus.VerdictWouldDeny),
		// the same transaction id again, later: forwarded, then the gate stops
		write(1, at.Add(3*time.Second), 52, 66, modbus.OutcomeForwarded, modbus.VerdictAllowed),
	}
	ctx := context.Background()
	if _, err := w.Append(ctx, audit.SessionStart{SessionID: "7f3a", User: "alice", Asset: "plc-7", Protocol: "modbus", Rule: "eng-day"}); err != nil {
		t.Fatal(err)
	}
	// Another session's write, completed, between them: not in --session 7f3a.
	if _, err := w.Append(ctx, audit.SessionStart{SessionID: "8b21", User: "bob", Asset: "rtu-2", Protocol: "modbus", Rule: "eng-day"}); err != nil {
		t.Fatal(err)
	}
	for i := range recs {
		if _, err := w.AppendBuffered(modbus.AuditPayload("7f3a", &recs[i], nil)); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			for _, o := range []modbus.Outcome{modbus.OutcomeForwarded, modbus.OutcomeOK} {
				r := write(1, at, 52, 55, o, modbus.VerdictAllowed)
				if _, err := w.AppendBuffered(modbus.AuditPayload("8b21", &r, nil)); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	if _, err := w.Checkpoint(ctx); err != nil { // durable and signed, as the periodic checkpoint makes it
		t.Fatal(err)
	}
	// No Close: the gate stopped here (no seal, no end records).

	var out bytes.Buffer
	if err := runAudit([]string{"show", "--session", "7f3a", logDir}, &out); err != nil {
		t.Fatal(err)
	}
	got := strings.Split(strings.TrimSpace(out.String()), "\n")
	want := []string{
		"14:03:04.120 alice plc-7 unit 1 write holding 52 = 55 -> ok (1.2 ms)",
		"14:03:05.120 alice plc-7 unit 1 read holding 52 -> ok = 55 (0.8 ms)",
		"14:03:06.120 alice plc-7 unit 1 write holding 60 = 1 -> ok (1.2 ms) [would deny, exception 02 illegal data address: outside write ranges 50-55]",
		"14:03:07.120 alice plc-7 unit 1 write holding 52 = 66 -> forwarded, no response recorded (gate stopped?)",
		"-- session 7f3a has no end record: it is live, or the gate stopped before recording its end",
	}
	if len(got) != 1+len(want) || !strings.Contains(got[0], "session 7f3a start alice") || strings.Join(got[1:], "\n") != strings.Join(want, "\n") {
		t.Fatalf("show --session 7f3a:\n%s\nwant the start, then\n%s", out.String(), strings.Join(want, "\n"))
	}
	// The whole log: bob's write once too.
	out.Reset()
	if err := runAudit([]string{"show", logDir}, &out); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out.String(), "write holding 52 = 55"); n != 2 {
		t.Errorf("the whole log shows write holding 52 = 55 %d times, want twice (alice's and bob's):\n%s", n, out.String())
	}
	if strings.Count(out.String(), "-> forwarded") != 1 {
		t.Errorf("the whole log shows %d forwarded lines, want 1:\n%s", strings.Count(out.String(), "-> forwarded"), out.String())
	}

	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	keyPath := filepath.Join(dir, "pub.pem")
	os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600)
	out.Reset()
	if err := runAudit([]string{"verify", "--key", keyPath, logDir}, &out); err != nil || !strings.Contains(out.String(), "signatures good") ||
		!strings.Contains(out.String(), "OK up to the end reported above, which is NOT sealed") {
		t.Fatalf("verify: %v\n%s", err, out.String())
	}
	w.Close()
}
