package audit

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func openLog(t testing.TB, dir string, key crypto.Signer, opts ...Option) *Writer {
	t.Helper()
	// Long background intervals keep tests deterministic unless a test asks.
	base := []Option{WithLogID("test-log"), WithCheckpointInterval(time.Hour), WithFlushInterval(time.Hour)}
	w, err := Open(dir, key, append(base, opts...)...)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	return w
}

// writeSession appends a session: start, n payloads each way, end.
func writeSession(t testing.TB, w *Writer, id string, n int) {
	t.Helper()
	ctx := context.Background()
	must := func(_ Position, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("append session %s: %v", id, err)
		}
	}
	now := time.Now()
	must(w.Append(ctx, SessionStart{SessionID: id, User: "alice", CertSerial: "0a1b", Source: "10.0.0.5:51000",
		Asset: "plc-7", Protocol: "modbus", Rule: "eng-day", ValidUntil: TimestampOf(now.Add(time.Hour))}))
	for i := 0; i < n; i++ {
		req := []byte{0, byte(i), 0, 0, 0, 6, 1, 3, 0, 0, 0, 10}
		must(w.AppendBuffered(Payload{SessionID: id, First: TimestampOf(now), Direction: ToAsset, Bytes: uint64(len(req)), Raw: req,
			Decoded: &Decoded{Protocol: "modbus", Transaction: uint64(i), Unit: 1, Function: 3, FunctionName: "read-holding-registers",
				Table: "holding", Start: 0, Count: 10, Outcome: "ok"}}))
		must(w.AppendBuffered(Payload{SessionID: id, First: TimestampOf(now), Direction: ToClient, Bytes: 29, Raw: make([]byte, 20)}))
	}
	must(w.Append(ctx, SessionEnd{SessionID: id, Reason: "client closed", BytesToAsset: uint64(12 * n), BytesToClient: uint64(29 * n)}))
}

// entries reads every record of dir.
func entries(t testing.TB, dir string) []Entry {
	t.Helper()
	r, err := NewReader(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var out []Entry
	for {
		e, err := r.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("read %s: %v", dir, err)
		}
		out = append(out, e)
	}
}

func copyDir(t testing.TB, src string) string {
	t.Helper()
	dst := t.TempDir()
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

func trustOf(k *ecdsa.PrivateKey) Trust { return Trust{PublicKey: &k.PublicKey, LogID: "test-log"} }

// wantProblem checks err is a *Problem wrapping target at file/seq.
func wantProblem(t *testing.T, err error, target error, file string, seq int64) *Problem {
	t.Helper()
	var p *Problem
	if !errors.As(err, &p) {
		t.Fatalf("got error %v, want a *Problem wrapping %v", err, target)
	}
	if !errors.Is(err, target) {
		t.Fatalf("got %v, want it to wrap %v", err, target)
	}
	if file != "" && p.File != file {
		t.Fatalf("problem in %s, want %s: %v", p.File, file, err)
	}
	if seq >= 0 && (!p.HasSeq || p.Seq != uint64(seq)) {
		t.Fatalf("problem at seq %d (known %v), want %d: %v", p.Seq, p.HasSeq, seq, err)
	}
	return p
}

func fileOf(t testing.TB, dir string, idx uint64) string { return filepath.Join(dir, FileName(idx)) }

func mustRead(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustWrite(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

var _ = fmt.Sprint
