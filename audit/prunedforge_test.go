package audit

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"strings"
	"testing"
)

// Only a log-pruned record that names exactly the file before the first
// one present (its index, its last seq, the hash its successor's rotation
// chains to) and that a verified signature covers explains the gap. Each
// case writes a record the gate never would (it has the key: these are
// what a writer bug, or a stale record reused, could leave), removes files
// 0 and 1, and Verify without AllowPartial must refuse the log.
func TestVerifyPrunedRecordMustMatch(t *testing.T) {
	type variant struct {
		name   string
		edit   func(p *Pruned)
		unsign bool // the record stays in the unsigned tail (a power cut)
		ok     bool
	}
	for _, v := range []variant{
		{name: "exact, signed", ok: true},
		{name: "exact, unsigned", unsign: true},
		{name: "last seq one short", edit: func(p *Pruned) { p.LastSeq-- }},
		{name: "last seq one over", edit: func(p *Pruned) { p.LastSeq++ }},
		{name: "another head", edit: func(p *Pruned) { h := sha256.Sum256(p.Head); p.Head = h[:] }},
		{name: "an earlier file (a stale record)", edit: func(p *Pruned) { p.File-- }},
		{name: "a later file", edit: func(p *Pruned) { p.File++ }},
	} {
		t.Run(v.name, func(t *testing.T) {
			dir := t.TempDir()
			key := newKey(t)
			w := openLog(t, dir, key, WithMaxFileSize(2<<10), WithCheckpointEvery(1<<20))
			for i := 0; i < 10; i++ {
				writeSession(t, w, fmt.Sprintf("s%d", i), 2)
			}
			if _, err := w.Checkpoint(context.Background()); err != nil {
				t.Fatal(err)
			}
			files, _, err := fileSizes(dir)
			if err != nil || len(files) < 4 {
				t.Fatalf("%d files, %v; want at least 4", len(files), err)
			}
			next, err := readRotation(dir, files[2])
			if err != nil {
				t.Fatal(err)
			}
			p := Pruned{File: 1, LastSeq: next.seq - 1, Head: next.prevHead}
			if v.edit != nil {
				v.edit(&p)
			}
			if _, err := w.appendDurable(Event{Type: EventLogPruned, Pruned: &p, Reason: "test"}); err != nil {
				t.Fatal(err)
			}
			if v.unsign {
				close(w.done) // a power cut: no checkpoint, no seal
				<-w.loopDone
				<-w.flushDone
				w.f.Close()
			} else if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			for _, f := range files[:2] {
				if err := os.Remove(fileOf(t, dir, f.index)); err != nil {
					t.Fatal(err)
				}
			}
			rep, err := Verify(dir, trustOf(key))
			if v.ok {
				if err != nil || rep.PrunedFiles != 2 {
					t.Fatalf("verify: %+v, %v", rep, err)
				}
				return
			}
			p2 := wantProblem(t, err, ErrFiles, FileName(2), -1)
			if !strings.Contains(p2.Error(), "earlier files are missing") {
				t.Fatalf("problem %v", p2)
			}
			tr := trustOf(key)
			tr.AllowPartial = true
			if _, err := Verify(dir, tr); err != nil {
				t.Fatalf("with AllowPartial: %v", err)
			}
		})
	}
}
