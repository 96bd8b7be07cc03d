package audit

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// goldenKey is a fixed Ed25519 key: its signatures are deterministic, so a
// log written with it and a fixed clock has fixed bytes.
var goldenKey = ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))

// writeGoldenLog writes a fixed sequence of records (no session end: its
// checkpoint is asynchronous) with a fixed clock and closes the log.
func writeGoldenLog(t *testing.T, dir string, opts ...Option) {
	t.Helper()
	tick := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	clock := func() time.Time { tick = tick.Add(time.Millisecond); return tick }
	w := openLog(t, dir, goldenKey, append([]Option{WithClock(clock)}, opts...)...)
	ctx := context.Background()
	if _, err := w.Append(ctx, SessionStart{SessionID: "s1", User: "alice", Asset: "plc-7", Protocol: "modbus", Rule: "eng"}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.AppendBuffered(Payload{SessionID: "s1", First: 1, Direction: ToAsset, Bytes: 3, Raw: []byte{1, 2, 3},
		Decoded: &Decoded{Protocol: "modbus", Unit: 1, Function: 3, Table: "holding", Count: 2}}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Append(ctx, Event{Type: "login-failed", User: "mallory", Reason: "bad code"}); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// logDigest is SHA-256 over the log's files in order.
func logDigest(t *testing.T, dir string) string {
	t.Helper()
	names, err := listFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	for _, f := range names {
		h.Write(mustRead(t, filepath.Join(dir, f.name)))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// goldenDigest is logDigest of writeGoldenLog without dev mode, computed
// before Record.Dev existed: a writer without WithDevMode must keep
// writing exactly these bytes (so existing logs and their hashes are
// unchanged).
const goldenDigest = "e345dbfa2d517dcfaa5d2a8f8f02c05e26a1b3bbd322af89dd23c7439a0714d9"

func TestNormalLogBytesUnchanged(t *testing.T) {
	dir := t.TempDir()
	writeGoldenLog(t, dir)
	if got := logDigest(t, dir); got != goldenDigest {
		t.Fatalf("a log written without dev mode hashes to %s, want %s (the record encoding changed)", got, goldenDigest)
	}
	for _, e := range entries(t, dir) {
		if e.Record.Dev {
			t.Fatalf("seq %d (%s) marked dev without WithDevMode", e.Record.Seq, e.Record.Kind)
		}
	}
	rep, err := Verify(dir, Trust{PublicKey: goldenKey.Public(), LogID: "test-log", RequireSealed: true})
	if err != nil {
		t.Fatal(err)
	}
	if rep.DevRecords != 0 || rep.DevSummary() != "" {
		t.Fatalf("normal log reported with %d dev records: %q", rep.DevRecords, rep.DevSummary())
	}
	var out strings.Builder
	if err := Show(&out, dir, ShowOptions{}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), DevPrefix) {
		t.Fatalf("normal log shown with dev marks:\n%s", out.String())
	}
}

func TestDevModeMarksEveryRecord(t *testing.T) {
	dir := t.TempDir()
	// A rotation inside the log too: every file's rotation record is marked.
	writeGoldenLog(t, dir, WithDevMode("identity service in dev mode"), WithMaxFileSize(300))
	ents := entries(t, dir)
	kinds := map[Kind]bool{}
	for _, e := range ents {
		kinds[e.Record.Kind] = true
		if !e.Record.Dev {
			t.Errorf("%s seq %d (%s) not marked dev", e.File, e.Record.Seq, e.Record.Kind)
		}
	}
	for _, k := range []Kind{KindRotation, KindSessionStart, KindPayload, KindEvent, KindCheckpoint} {
		if !kinds[k] {
			t.Errorf("no %s record written: the test covers less than it says", k)
		}
	}
	if files, _ := listFiles(dir); len(files) < 2 {
		t.Errorf("%d files, want a rotation", len(files))
	}
	// Same records, different bytes: the marker is inside the hashed envelope.
	if logDigest(t, dir) == goldenDigest {
		t.Fatal("dev-mode log has the bytes of a normal one")
	}
	rep, err := Verify(dir, Trust{PublicKey: goldenKey.Public(), LogID: "test-log", RequireSealed: true})
	if err != nil {
		t.Fatal(err)
	}
	if rep.DevRecords != uint64(len(ents)) || rep.DevRecords != rep.Records || rep.DevMixed() || rep.DevFirst != 0 || rep.DevLast != rep.LastSeq {
		t.Fatalf("report: %d of %d records dev (seq %d..%d), mixed %v; want all", rep.DevRecords, rep.Records, rep.DevFirst, rep.DevLast, rep.DevMixed())
	}
	want := fmt.Sprintf("DEV MODE: %d records signed with a software key (not a TPM)", len(ents))
	if got := rep.DevSummary(); got != want {
		t.Fatalf("summary %q, want %q", got, want)
	}
	var out strings.Builder
	if err := Show(&out, dir, ShowOptions{}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != len(ents) {
		t.Fatalf("%d transcript lines for %d records", len(lines), len(ents))
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, DevPrefix) {
			t.Errorf("line not marked: %q", l)
		}
	}
}

// The marker is part of the hashed envelope: flipping it off in a record
// breaks the chain (or, for a record with no successor, its checkpoint).
func TestDevMarkerIsChained(t *testing.T) {
	dir := t.TempDir()
	writeGoldenLog(t, dir, WithDevMode(""))
	ents := entries(t, dir)
	e := ents[1]
	payload, err := encodeRecord(&e.Record)
	if err != nil {
		t.Fatal(err)
	}
	e.Record.Dev = false
	plain, err := encodeRecord(&e.Record)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, e.File)
	b := mustRead(t, path)
	frame := appendFrame(nil, payload)
	i := strings.Index(string(b), string(frame))
	if i < 0 {
		t.Fatal("record frame not found in the file")
	}
	b = append(append(append([]byte(nil), b[:i]...), appendFrame(nil, plain)...), b[i+len(frame):]...)
	mustWrite(t, path, b)
	_, err = Verify(dir, Trust{PublicKey: goldenKey.Public(), LogID: "test-log"})
	wantProblem(t, err, ErrChain, e.File, int64(ents[2].Record.Seq))
}

// A log written partly with and partly without dev mode is reported as mixed.
func TestDevModeMixedLog(t *testing.T) {
	dir := t.TempDir()
	w := openLog(t, dir, goldenKey)
	if _, err := w.Append(context.Background(), Event{Type: "tpm"}); err != nil {
		t.Fatal(err)
	}
	w.Close()
	w = openLog(t, dir, goldenKey, WithDevMode("no TPM"))
	if reason, dev := w.DevMode(); !dev || reason != "no TPM" {
		t.Fatalf("DevMode() = %q, %v", reason, dev)
	}
	if _, err := w.Append(context.Background(), Event{Type: "dev"}); err != nil {
		t.Fatal(err)
	}
	w.Close()
	rep, err := Verify(dir, Trust{PublicKey: goldenKey.Public(), LogID: "test-log"})
	if err != nil {
		t.Fatal(err)
	}
	// Not dev: rotation, tpm, log-closed, checkpoint. Dev: dev, log-closed, checkpoint.
	if !rep.DevMixed() || rep.DevRecords != 3 || rep.Records != 7 || rep.DevFirst != 4 || rep.DevLast != 6 {
		t.Fatalf("report: %d of %d dev, seq %d..%d, mixed %v", rep.DevRecords, rep.Records, rep.DevFirst, rep.DevLast, rep.DevMixed())
	}
	if s := rep.DevSummary(); !strings.Contains(s, "DEV MODE: 3 records") || !strings.Contains(s, "MIXED") || !strings.Contains(s, "4 records not marked dev") {
		t.Fatalf("summary %q", s)
	}
}
