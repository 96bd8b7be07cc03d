package audit

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// FuzzDecodeRecord feeds arbitrary payloads to DecodeRecord: it must never
// panic, and what it accepts must be canonical (re-encodes to the same
// bytes) and valid. Seeds are in testdata/fuzz/FuzzDecodeRecord.
func FuzzDecodeRecord(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		rec, body, _, err := DecodeRecord(data)
		if err != nil {
			return
		}
		again, err := encodeRecord(&rec)
		if err != nil || !bytes.Equal(again, data) {
			t.Fatalf("accepted record does not re-encode to its bytes: %v", err)
		}
		if body.Kind() != rec.Kind {
			t.Fatalf("body kind %s, record kind %s", body.Kind(), rec.Kind)
		}
		enc, err := encodeBody(body)
		if err != nil || !bytes.Equal(enc, rec.Body) {
			t.Fatalf("accepted body does not re-encode to its bytes: %v", err)
		}
	})
}

// TestWriteFuzzSeeds regenerates the checked-in seed corpus from a real
// log: OTGATE_WRITE_FUZZ_SEEDS=1 go test -run TestWriteFuzzSeeds ./audit
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("OTGATE_WRITE_FUZZ_SEEDS") == "" {
		t.Skip("set OTGATE_WRITE_FUZZ_SEEDS=1 to regenerate testdata/fuzz")
	}
	dir := t.TempDir()
	key := newKey(t)
	w := openLog(t, dir, key, WithMaxFileSize(1024))
	writeSession(t, w, "seed", 1)
	if _, err := w.AppendBuffered(Event{Type: "lockout", User: "mallory", Source: "10.0.0.9", Reason: "5 failures"}); err != nil {
		t.Fatal(err)
	}
	w.Close()
	out := filepath.Join("testdata", "fuzz", "FuzzDecodeRecord")
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	seen := map[Kind]bool{}
	for _, e := range entries(t, dir) {
		if seen[e.Record.Kind] {
			continue
		}
		seen[e.Record.Kind] = true
		payload, err := encodeRecord(&e.Record)
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Join(out, "seed-"+e.Record.Kind.String())
		mustWrite(t, name, []byte(fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", payload)))
	}
	if len(seen) != 6 {
		t.Fatalf("seeds cover %d kinds, want all 6", len(seen))
	}
}
