package audit

import (
	"path/filepath"
	"testing"
	"time"
)

// forgeAppend appends body as a correctly chained, unsigned record to the
// newest file of dir: what anybody who can write the disk can do, with no
// key at all.
func forgeAppend(t *testing.T, dir string, b Body) {
	t.Helper()
	es := entries(t, dir)
	last := es[len(es)-1]
	enc, err := encodeBody(b)
	if err != nil {
		t.Fatal(err)
	}
	rec := Record{Seq: last.Record.Seq + 1, Time: TimestampOf(time.Now()), Prev: last.Hash[:], Kind: b.Kind(), Body: enc}
	payload, err := encodeRecord(&rec)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, last.File)
	mustWrite(t, p, appendFrame(mustRead(t, p), payload))
}

// A copy of the log taken before a later run, put back, with one forged
// unsigned log-anchored record claiming the counter's current value: the
// anchor counts only from signed records, so Verify still finds the log
// behind the counter, and Open records the mismatch instead of taking the
// forged value (and then signing it with its next checkpoint).
func TestAnchorFromUnsignedRecordCountsForNothing(t *testing.T) {
	dir, key, c := t.TempDir(), newKey(t), &counter{start: 5}
	w := openLog(t, dir, key, WithAnchor(c))
	writeSession(t, w, "s1", 2)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	old := copyDir(t, dir)
	w = openLog(t, dir, key, WithAnchor(c))
	writeSession(t, w, "s2", 2)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	// The genuine log verifies against the counter: every anchor record
	// it holds was signed before the counter moved.
	if _, err := verifyAnchor(t, dir, trustOf(key), c.value); err != nil {
		t.Fatalf("the genuine log: %v", err)
	}
	if _, err := verifyAnchor(t, old, trustOf(key), c.value); err == nil {
		t.Fatal("the old copy verifies against the counter: the test proves nothing")
	}
	v := c.value
	forgeAppend(t, old, Event{Type: EventLogAnchored, Anchor: &v})
	rep, err := verifyAnchor(t, old, trustOf(key), c.value)
	if err == nil {
		t.Fatal("a rolled-back copy with a forged unsigned anchor record passes the anchor check")
	}
	if !rep.HasUnsignedAnchor || rep.Anchor >= c.value {
		t.Errorf("report: anchor %d (has %t), unsigned anchor at seq %d (has %t); want the signed anchor behind %d and the forged one named",
			rep.Anchor, rep.HasAnchor, rep.UnsignedAnchorSeq, rep.HasUnsignedAnchor, c.value)
	}
	t.Logf("verify: %v", err)
	w = openLog(t, old, key, WithAnchor(c))
	if st := w.AnchorState(); st.Alarm == "" {
		t.Errorf("Open of the rolled-back copy with a forged anchor raised no alarm: %+v", st)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got := eventsOf(t, old, EventAnchorMismatch); len(got) == 0 {
		t.Error("no anchor-mismatch record in the log")
	}
}
