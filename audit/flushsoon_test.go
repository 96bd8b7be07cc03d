package audit

import (
	"testing"
	"time"
)

// durability reports the log's logical end and how much of it is fsynced.
func (w *Writer) durability() (written, durable uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.written, w.durable
}

// A buffered record stays not yet fsynced until the flush interval, unless
// FlushSoon asks for it: then an fsync covers it at once, without the
// caller waiting for it.
func TestFlushSoonMakesBufferedRecordsDurableAtOnce(t *testing.T) {
	dir := t.TempDir()
	key := newKey(t)
	w, err := Open(dir, key, WithLogID("test-log"), WithFlushInterval(time.Hour),
		WithCheckpointInterval(time.Hour), WithCheckpointEvery(1<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.Sync(); err != nil { // whatever Open wrote
		t.Fatal(err)
	}
	pay := Payload{SessionID: "s1", Direction: ToAsset, Bytes: 12, Raw: []byte{0, 1, 0, 0, 0, 6, 1, 6, 0, 52, 0, 55}}
	if _, err := w.AppendBuffered(pay); err != nil {
		t.Fatal(err)
	}
	// Nothing else flushes it: still not durable a while later.
	time.Sleep(200 * time.Millisecond)
	written, durable := w.durability()
	if durable >= written {
		t.Fatalf("buffered record durable (%d of %d bytes) without a flush: the test shows nothing", durable, written)
	}
	w.FlushSoon()
	waitFor(t, "the buffered record fsynced after FlushSoon", func() bool {
		_, d := w.durability()
		return d >= written
	})
	// Requests while nothing is pending, and many in a row, are harmless.
	for i := 0; i < 100; i++ {
		w.FlushSoon()
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	w.FlushSoon() // after Close: returns, changes nothing
	rep, err := Verify(dir, trustOf(key))
	if err != nil || rep.Records == 0 || rep.Unsigned != 0 {
		t.Fatalf("verify after close: %+v, %v", rep, err)
	}
}
