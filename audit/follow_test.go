package audit

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestFollowerWhileWriting follows a log that is being appended to and
// rotated, and must see every record once, in order, chained.
func TestFollowerWhileWriting(t *testing.T) {
	dir := t.TempDir()
	w := openLog(t, dir, newKey(t), WithMaxFileSize(1024), WithCheckpointEvery(13))
	const n = 600
	errc := make(chan error, 1)
	go func() {
		for i := 0; i < n; i++ {
			var err error
			if i%3 == 0 {
				_, err = w.Append(context.Background(), Event{Type: "refusal", User: fmt.Sprint("u", i)})
			} else {
				_, err = w.AppendBuffered(Event{Type: "refusal", User: fmt.Sprint("u", i)})
			}
			if err != nil {
				errc <- err
				return
			}
		}
		errc <- w.Close()
	}()
	f := NewFollower(dir, 0, false)
	var next uint64
	users := 0
	deadline := time.Now().Add(60 * time.Second)
	writerDone := false
	for {
		e, ok, err := f.TryNext()
		if err != nil {
			t.Fatalf("follower: %v", err)
		}
		if !ok {
			if writerDone {
				break
			}
			select {
			case err := <-errc:
				if err != nil {
					t.Fatal(err)
				}
				writerDone = true
			case <-time.After(time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Fatal("follower made no progress")
			}
			continue
		}
		if e.Record.Seq != next {
			t.Fatalf("follower read seq %d, want %d", e.Record.Seq, next)
		}
		next++
		if ev, ok := e.Body.(Event); ok && ev.Type != EventLogClosed {
			users++
		}
	}
	if users != n {
		t.Fatalf("follower saw %d events, want %d", users, n)
	}
	rep, err := Verify(dir, Trust{ChainOnly: true})
	if err != nil || rep.LastSeq+1 != next {
		t.Fatalf("follower read %d records, log has %+v (%v)", next, rep, err)
	}
	// Resuming after a seq skips exactly what was read.
	f = NewFollower(dir, next-5, true)
	e, ok, err := f.TryNext()
	if err != nil || !ok || e.Record.Seq != next-4 {
		t.Fatalf("resume after seq %d: got seq %d ok %v err %v", next-5, e.Record.Seq, ok, err)
	}
}
