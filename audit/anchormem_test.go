package audit

import (
	"os"
	"testing"
)

// anchorFloodRecords is how many forged anchor records the newest file
// holds in BenchmarkOpenAnchorRecordsOnly: some 40 MiB.
const anchorFloodRecords = 500000

// anchorFlood builds in dir a log whose newest (only) file is n chained,
// unsigned log-anchored records after its rotation record, each with
// anchor value 1<<40 (anchor is true), or records of the same size
// without an anchor value (their reason 10 bytes longer): what anybody
// who can write the disk can forge, no key needed.
func anchorFlood(t testing.TB, dir string, n int, anchor bool) {
	b := newLogBuilder(t, dir, newKey(t))
	for i := 1; i <= n; i++ {
		v := uint64(1 << 40) // 10 bytes encoded, as its key and value
		e := Event{Type: EventLogAnchored, Reason: "log opened", Anchor: &v}
		if !anchor {
			e.Reason, e.Anchor = "log opened, no value", nil
		}
		b.add(e)
	}
	b.flush()
}

// BenchmarkOpenAnchorRecordsOnly measures what Open holds to read a forged
// newest file made only of anchor records, none covered by a checkpoint
// (see benchOpen for the figures).
func BenchmarkOpenAnchorRecordsOnly(b *testing.B) {
	src := b.TempDir()
	anchorFlood(b, src, anchorFloodRecords, true)
	st, err := os.Stat(fileOf(b, src, 0))
	if err != nil {
		b.Fatal(err)
	}
	benchOpen(b, src, newKey(b), &counter{start: 1}, st.Size())
}

// Open's anchor check must not hold something for every anchor record of
// the newest file: a forged file made only of them would grow it without
// bound. Two files of the same n records, forged: in one each is an
// anchor record, in the other none has an anchor value. An Open that kept
// every anchor record (16 bytes each, in a slice grown by appending)
// allocates some 18 MB more for the first; what both must allocate
// differs by what the anchor value and the longer reason decode to, about
// a megabyte. The margin, 16 bytes a record (3.2 MB), is between them. Both answers
// are the same: no checkpoint signs an anchor, the counter is ahead.
func TestOpenAllocatesNoMoreForManyAnchorRecords(t *testing.T) {
	const n = 200_000
	key := newKey(t)
	anchored, plain := t.TempDir(), t.TempDir()
	anchorFlood(t, anchored, n, true)
	anchorFlood(t, plain, n, false)
	a, ast := allocsOfOpen(t, anchored, key, &counter{value: n, defined: true})
	p, pst := allocsOfOpen(t, plain, key, &counter{value: n, defined: true})
	if ast.Alarm == "" || pst.Alarm == "" {
		t.Errorf("anchor states %+v and %+v: want an alarm for both (no anchor record is signed)", ast, pst)
	}
	t.Logf("Open allocated %.1f MB for %d anchor records, %.1f MB for %d records without an anchor value",
		float64(a)/1e6, n, float64(p)/1e6, n)
	if a > p+16*n {
		t.Fatalf("Open allocated %d bytes more for a file of %d anchor records than for one of %d records without an anchor value: it holds something for every anchor record",
			a-p, n, n)
	}
}
