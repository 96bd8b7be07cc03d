package audit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
)

// A follower whose file the retention removes under it goes on from the
// oldest file left, of the same log: right after its position when it had
// read the whole file (nothing lost), or after a jump in seq that says how
// many records it lost to the retention (the syslog exporter reports
// those), never with an error that would send the export back to the
// start of the log.
func TestFollowerAcrossRemovedFile(t *testing.T) {
	for _, readAll := range []bool{true, false} {
		t.Run(fmt.Sprintf("file read whole %t", readAll), func(t *testing.T) {
			dir := t.TempDir()
			// The retention may remove file 0 only (as far as the
			// export got, on a gate).
			// Nothing until the follower has read (allow): the
			// writer's background retention would otherwise remove
			// file 0 before the follower starts.
			var allow atomic.Bool
			endOfFile0 := func() (uint64, bool) {
				s, err := firstSeq(fileOf(t, dir, 1), FileName(1))
				return s - 1, err == nil
			}
			removable := func(string) (uint64, bool) {
				if !allow.Load() {
					return 0, false
				}
				return endOfFile0()
			}
			w := openLog(t, dir, newKey(t), WithMaxFileSize(2048), WithCheckpointEvery(5),
				WithRetention(Retention{MaxBytes: 1, Removable: removable}))
			defer w.Close()
			// Until file 1 holds a record: a file 1 that exists but
			// whose first record is not there yet (the writer's
			// checkpoint can rotate in the background) has no first seq.
			var end uint64
			for i := 0; ; i++ {
				if e, ok := endOfFile0(); ok {
					end = e
					break
				}
				if i == 1000 {
					t.Fatal("the log never rotated to file 1")
				}
				writeSession(t, w, fmt.Sprintf("a%d", i), 2)
			}
			f := NewFollower(dir, 0, false)
			var lastSeq uint64
			for n := 0; lastSeq < end && (readAll || n < 3); n++ {
				e, _, err := f.TryNext()
				if err != nil {
					t.Fatal(err)
				}
				lastSeq = e.Record.Seq
			}
			if f.fileIdx != 0 {
				t.Fatalf("the follower is in file %d, want 0", f.fileIdx)
			}
			allow.Store(true)
			// The gate logs on and its retention removes file 0.
			for i := 0; ; i++ {
				if _, err := os.Stat(fileOf(t, dir, 0)); errors.Is(err, os.ErrNotExist) {
					break
				}
				if i == 100 {
					t.Fatal("the retention did not remove file 0")
				}
				writeSession(t, w, fmt.Sprintf("s%d", i+1), 2)
				w.Checkpoint(context.Background())
			}
			e, ok, err := f.TryNext()
			if err != nil || !ok {
				t.Fatalf("after file 0 was removed: %v, %t", err, ok)
			}
			first, err := firstSeq(fileOf(t, dir, f.fileIdx), FileName(f.fileIdx))
			if err != nil {
				t.Fatal(err)
			}
			if e.Record.Seq != first {
				t.Errorf("the follower went on at seq %d, want %d (the start of the oldest file left, %s)", e.Record.Seq, first, FileName(f.fileIdx))
			}
			if readAll && e.Record.Seq != lastSeq+1 {
				t.Errorf("the follower read file 0 to its end (seq %d), then went on at seq %d: want nothing lost", lastSeq, e.Record.Seq)
			}
			if !readAll && e.Record.Seq <= lastSeq+1 {
				t.Errorf("the follower stopped at seq %d in file 0, then went on at seq %d: want a gap", lastSeq, e.Record.Seq)
			}
			for {
				_, ok, err := f.TryNext()
				if err != nil {
					t.Fatalf("following on: %v", err)
				}
				if !ok {
					break
				}
			}
		})
	}
}
