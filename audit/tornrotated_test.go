package audit

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// The newest file of a rotated log cut at every offset: inside its
// rotation record it is damage (a file is created with that record in
// place); after it, every cut keeps the records before it (rotation and
// checkpoint records included) and Open recovers the log, which then
// verifies sealed with the recovery signed.
func TestTornTailOfRotatedNewestFileAtEveryOffset(t *testing.T) {
	key := newKey(t)
	src := t.TempDir()
	// No background checkpoint (it signs when it runs, and one that
	// lands late fills the newest file so that the close rotates again):
	// every checkpoint here is an explicit one.
	w := openLog(t, src, key, WithMaxFileSize(700), WithCheckpointEvery(1<<20), WithCheckpointInterval(time.Hour))
	for _, id := range []string{"a", "b", "c"} {
		for range 4 {
			if _, err := w.Append(context.Background(), Event{Type: "refusal", User: id}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := w.Checkpoint(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	// Deterministic layout of the newest file: its rotation record, an
	// event, a checkpoint, an event, then the seal (log-closed and its
	// checkpoint).
	ctx := context.Background()
	for attempt := 0; ; attempt++ {
		pos, err := w.Append(ctx, Event{Type: "refusal", User: "bob"})
		if err != nil {
			t.Fatal(err)
		}
		for f := pos.File; pos.File == f; {
			if pos, err = w.Append(ctx, Event{Type: "refusal", User: "bob"}); err != nil {
				t.Fatal(err)
			}
		}
		cp, err := w.Checkpoint(ctx)
		if err != nil {
			t.Fatal(err)
		}
		last, err := w.Append(ctx, Event{Type: "refusal", User: "carol"})
		if err != nil {
			t.Fatal(err)
		}
		if cp.File == pos.File && last.File == pos.File {
			break
		}
		if attempt == 20 {
			t.Fatalf("no file with a rotation record, an event, a checkpoint and an event in 20 attempts")
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	es := entries(t, src)
	newest := es[len(es)-1].File
	idx, _ := parseFileName(newest)
	var inNewest []Entry
	for _, e := range es {
		if e.File == newest {
			inNewest = append(inNewest, e)
		}
	}
	if idx == 0 || len(inNewest) < 3 {
		t.Fatalf("want a rotated newest file with several records, got %s with %d", newest, len(inNewest))
	}
	cps := 0
	for _, e := range inNewest[:len(inNewest)-1] { // not the seal's
		if e.Record.Kind == KindCheckpoint {
			cps++
		}
	}
	if cps == 0 {
		t.Fatalf("want a checkpoint in %s before the seal", newest)
	}
	full := mustRead(t, fileOf(t, src, idx))
	rotEnd := inNewest[0].Offset + inNewest[0].Size
	for cut := int64(len(fileMagic)); cut < int64(len(full)); cut++ {
		t.Run(fmt.Sprint("cut at ", cut), func(t *testing.T) {
			dir := copyDir(t, src)
			mustWrite(t, fileOf(t, dir, idx), full[:cut])
			rep, err := Verify(dir, trustOf(key))
			if cut < rotEnd {
				wantProblem(t, err, ErrTruncated, newest, -1)
				if _, err := Open(dir, key, WithLogID("test-log")); !errors.Is(err, ErrTruncated) {
					t.Fatalf("Open = %v, want ErrTruncated", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			var kept uint64
			for _, e := range inNewest {
				if e.Offset+e.Size <= cut {
					kept = e.Record.Seq
				}
			}
			if rep.LastSeq != kept || rep.End == EndSealed {
				t.Fatalf("want records through seq %d, not sealed; got last %d end %v", kept, rep.LastSeq, rep.End)
			}
			w, err := Open(dir, key, WithLogID("test-log"))
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			tr := trustOf(key)
			tr.RequireSealed = true
			rep, err = Verify(dir, tr)
			if err != nil || len(rep.Recoveries) != 1 || rep.Unsigned != 0 {
				t.Fatalf("after recovery: %+v %v", rep, err)
			}
		})
	}
}
