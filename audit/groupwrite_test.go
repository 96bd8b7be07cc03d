package audit

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
)

// TestBufferedAppendIsInTheFileWhenItReturns: many goroutines append
// buffered records (their frames are written in shared batches); the
// moment AppendBuffered returns, the record's whole frame is in the file
// at its position (it survives a crash of the process), across rotations.
func TestBufferedAppendIsInTheFileWhenItReturns(t *testing.T) {
	dir := t.TempDir()
	key := newKey(t)
	w := openLog(t, dir, key, WithMaxFileSize(32<<10), WithCheckpointEvery(100))
	var wg sync.WaitGroup
	var appended atomic.Int64
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				p := Payload{SessionID: fmt.Sprint("s", g), Direction: ToAsset, Bytes: uint64(i), Raw: make([]byte, i%40)}
				pos, err := w.AppendBuffered(p)
				if err != nil {
					t.Error(err)
					return
				}
				appended.Add(1)
				b, err := os.ReadFile(filepath.Join(dir, pos.File))
				if err != nil {
					t.Error(err)
					return
				}
				if int64(len(b)) < pos.Offset+frameHeaderSize {
					t.Errorf("seq %d returned, but %s holds %d bytes, frame at %d", pos.Seq, pos.File, len(b), pos.Offset)
					return
				}
				n := int64(binary.BigEndian.Uint32(b[pos.Offset:]))
				end := pos.Offset + frameHeaderSize + n
				if int64(len(b)) < end || sha256.Sum256(b[pos.Offset+frameHeaderSize:end]) != pos.Hash {
					t.Errorf("seq %d returned, but its frame at %s offset %d is not (all) in the file", pos.Seq, pos.File, pos.Offset)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(dir, trustOf(key))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Files < 2 {
		t.Fatalf("%d files: the test must cross a rotation", rep.Files)
	}
	payloads := 0
	for _, e := range entries(t, dir) {
		if _, ok := e.Body.(Payload); ok {
			payloads++
		}
	}
	if int64(payloads) != appended.Load() {
		t.Fatalf("%d payload records in the log, %d appended", payloads, appended.Load())
	}
}

// TestConcurrentAppendsWhenDiskFills: buffered appenders sharing batches
// on a filesystem that fills up: every append that returned success is in
// the log, the failure is sticky for all, and the log reopens without a
// torn tail (a failed batch is removed whole).
func TestConcurrentAppendsWhenDiskFills(t *testing.T) {
	mnt := tinyTmpfs(t)
	key := newKey(t)
	w := openLog(t, mnt, key)
	var mu sync.Mutex
	acked := map[uint64]bool{}
	var failures atomic.Int64
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				pos, err := w.AppendBuffered(Payload{SessionID: fmt.Sprint("full", g), Direction: ToAsset, Bytes: 300, Raw: make([]byte, 300)})
				if err != nil {
					failures.Add(1)
					return
				}
				mu.Lock()
				acked[pos.Seq] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if failures.Load() != 8 {
		t.Fatalf("%d of 8 appenders saw the failure, want all (64 KiB filled?)", failures.Load())
	}
	if _, err := w.Append(context.Background(), Event{Type: "unlock"}); err == nil {
		t.Fatal("append after a failed write succeeded: the failure must be sticky")
	}
	w.Close()
	seqs := map[uint64]bool{}
	for _, e := range entries(t, mnt) {
		seqs[e.Record.Seq] = true
	}
	for seq := range acked {
		if !seqs[seq] {
			t.Fatalf("acknowledged seq %d is not in the log", seq)
		}
	}
	if _, err := Verify(mnt, Trust{ChainOnly: true}); err != nil {
		t.Fatalf("log after disk full: %v", err)
	}
	w2, err := Open(mnt, key, WithLogID("test-log"))
	if err != nil {
		t.Fatalf("reopen after disk full: %v", err)
	}
	if w2.Recovered() != nil {
		t.Fatalf("the failed batch left a torn tail: %v", w2.Recovered())
	}
	w2.Close()
}
