package audit

import (
	"crypto/ecdsa"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strings"
	"testing"
	"time"
)

// openMemRecords is how many payload records the newest file holds in
// BenchmarkOpenAnchoredNoCheckpoint: some 300,000 records, about 40 MiB,
// most of a file at the 64 MiB rotation size.
const openMemRecords = 300000

// BenchmarkOpenAnchoredNoCheckpoint measures what Open allocates to read
// an anchored newest file that no checkpoint of the opening key covers
// (the device key changed since it was written): the worst case for the
// anchor check, which waits from the first anchor record to the end of
// the file for a checkpoint that never comes. It reports, per Open, the
// peak of the live heap while it runs (sampled every 200 us from the
// runtime's live-heap metric, with the GC run often so the figure stays
// close to what is held) above the heap before it, and the bytes and
// objects it allocates in all.
func BenchmarkOpenAnchoredNoCheckpoint(b *testing.B) {
	src := b.TempDir()
	c := &counter{start: 1}
	w := openLog(b, src, newKey(b), WithAnchor(c), WithMaxFileSize(64<<20), WithCheckpointEvery(1<<30))
	p := benchPayload()
	for i := 0; i < openMemRecords; i++ {
		if _, err := w.AppendBuffered(p); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	if n := len(mustFiles(b, src)); n != 1 {
		b.Fatalf("the log has %d files, want the records in one", n)
	}
	st, err := os.Stat(fileOf(b, src, 0))
	if err != nil {
		b.Fatal(err)
	}
	benchOpen(b, src, newKey(b), c, st.Size()) // the device key changed
}

// benchOpen opens copies of the log in src with key b.N times and reports,
// per Open, the peak of the live heap while it runs (sampled every 200 us
// from the runtime's live-heap metric, with the GC run often so the
// figure stays close to what is held) above the heap before it, the bytes
// and objects it allocates in all, and the size of the file.
func benchOpen(b *testing.B, src string, newKeyNow *ecdsa.PrivateKey, c *counter, size int64) {
	var alloc, live, objects float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		dir := copyDir(b, src)
		gc := debug.SetGCPercent(5)
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		base := liveHeap()
		stop, peak := make(chan struct{}), make(chan uint64)
		go func() {
			m := base
			t := time.NewTicker(200 * time.Microsecond)
			defer t.Stop()
			for {
				select {
				case <-stop:
					peak <- max(m, liveHeap())
					return
				case <-t.C:
					m = max(m, liveHeap())
				}
			}
		}()
		b.StartTimer()
		w, err := Open(dir, newKeyNow, WithLogID("test-log"), WithAnchor(c), WithMaxFileSize(64<<20))
		b.StopTimer()
		runtime.GC() // the live-heap metric is as of the last GC: one more at the end
		close(stop)
		top := <-peak
		runtime.ReadMemStats(&after)
		debug.SetGCPercent(gc)
		if err != nil {
			b.Fatal(err)
		}
		alloc += float64(after.TotalAlloc - before.TotalAlloc)
		objects += float64(after.Mallocs - before.Mallocs)
		live += float64(top - base)
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
		os.RemoveAll(dir)
		b.StartTimer()
	}
	b.ReportMetric(live/float64(b.N)/(1<<20), "MiB-peak-live/open")
	b.ReportMetric(alloc/float64(b.N)/(1<<20), "MiB-alloc/open")
	b.ReportMetric(objects/float64(b.N), "allocs/open")
	b.ReportMetric(float64(size)/(1<<20), "MiB-file")
}

// liveHeap is the runtime's live heap as of the last GC.
func liveHeap() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

func mustFiles(t testing.TB, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "audit-*.log"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// allocsOfOpen returns the bytes Open allocates opening (a copy of) dir
// with key, and the anchor state it found; the writer is closed again.
func allocsOfOpen(t *testing.T, dir string, key *ecdsa.PrivateKey, c *counter) (uint64, AnchorState) {
	t.Helper()
	dir = copyDir(t, dir)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	w, err := Open(dir, key, WithLogID("test-log"), WithAnchor(c), WithCheckpointInterval(time.Hour), WithFlushInterval(time.Hour))
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	st := w.AnchorState()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return after.TotalAlloc - before.TotalAlloc, st
}

// Open's check of the anchor (which anchor value a checkpoint of its key
// signs) must not hold something for every record between an anchor
// record and the checkpoint that covers it, nor for every record after
// one that none covers (the device key changed, the signer was down, the
// gate lost power). Two newest files of the same records: in one the
// anchor record is signed at once, in the other no checkpoint follows it.
// An Open that kept every later record's hash until a checkpoint came
// (as it did: a map entry a record, some 100 bytes) allocates well over
// 10 MB more for the second; the margin, 2 MiB, is far from both. The
// same key opens both, so the anchor's answer is the same work.
func TestOpenAllocatesNoMoreForAnUncoveredAnchor(t *testing.T) {
	const n = 100_000
	key := newKey(t)
	build := func(covered bool) string {
		dir := t.TempDir()
		b := newLogBuilder(t, dir, key)
		v := uint64(7)
		at := b.add(Event{Type: EventLogAnchored, Anchor: &v, Reason: "log opened"})
		if covered {
			b.checkpoint(at)
		}
		b.payloads(n, 0)
		b.flush()
		return dir
	}
	coveredDir, stretchDir := build(true), build(false)
	a, cst := allocsOfOpen(t, coveredDir, key, &counter{value: 7, defined: true})
	s, sst := allocsOfOpen(t, stretchDir, key, &counter{value: 7, defined: true})
	// The answers: the signed anchor counts, the unsigned one does not.
	if cst.Alarm != "" {
		t.Errorf("the log whose anchor record at the counter's value is signed: %+v, want no alarm", cst)
	}
	if sst.Alarm == "" {
		t.Errorf("the log whose anchor record no checkpoint covers: %+v, want an alarm (an unsigned anchor counts for nothing)", sst)
	}
	t.Logf("Open allocated %.1f MB for %d records after a signed anchor record, %.1f MB after one no checkpoint covers",
		float64(a)/1e6, n, float64(s)/1e6)
	if s > a+2<<20 {
		t.Fatalf("Open allocated %d bytes more for a file whose %d records follow an anchor record no checkpoint covers than for one whose anchor record is signed: it holds something for every record after it",
			s-a, n)
	}
}

// Which anchor value Open takes from the newest file: the last anchor
// record that the checkpoint of its key signing furthest covers, with
// that checkpoint's head read again from the file (it may name a record
// far behind it, as when many records land while the TPM signs), and
// nothing from a checkpoint that does not verify.
func TestOpenAnchorFromTheCheckpointThatSignsFurthest(t *testing.T) {
	key, other := newKey(t), newKey(t)
	otherID, err := KeyID(&other.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	v7, v8 := uint64(7), uint64(8)
	cases := []struct {
		name    string
		counter uint64
		build   func(b *logBuilder)
		alarm   string // "" for none
	}{
		{"head far behind the checkpoint", 7, func(b *logBuilder) {
			at := b.add(Event{Type: EventLogAnchored, Anchor: &v7})
			b.payloads(1000, 0)
			b.checkpoint(at + 700)
			b.payloads(10, 1)
		}, ""},
		{"a later checkpoint signing less", 8, func(b *logBuilder) {
			b.add(Event{Type: EventLogAnchored, Anchor: &v7})
			b.payloads(600, 0)
			b.add(Event{Type: EventLogAnchored, Anchor: &v8})
			b.payloads(10, 1)
			b.checkpoint(b.seq() - 1)
			b.payloads(10, 2)
			b.nextUnsigned = 0 // signed, but re-signing an older stretch
			b.checkpoint(300)
		}, ""},
		{"the second anchor not signed", 8, func(b *logBuilder) {
			at := b.add(Event{Type: EventLogAnchored, Anchor: &v7})
			b.payloads(600, 0)
			b.add(Event{Type: EventLogAnchored, Anchor: &v8})
			b.payloads(10, 1)
			b.checkpoint(at + 500)
		}, "last anchored at 7"},
		{"a checkpoint with a forged head", 7, func(b *logBuilder) {
			at := b.add(Event{Type: EventLogAnchored, Anchor: &v7})
			b.payloads(300, 0)
			b.checkpointHead(at+200, Hash{1})
		}, "holds no anchor"},
		{"a checkpoint of another key", 7, func(b *logBuilder) {
			at := b.add(Event{Type: EventLogAnchored, Anchor: &v7})
			b.payloads(300, 0)
			b.key, b.keyID = other, otherID
			b.checkpoint(at + 200)
		}, "holds no anchor"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			b := newLogBuilder(t, dir, key)
			tc.build(b)
			b.flush()
			w, err := Open(dir, key, WithLogID("test-log"), WithAnchor(&counter{value: tc.counter, defined: true}),
				WithCheckpointInterval(time.Hour), WithFlushInterval(time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			st := w.AnchorState()
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			switch {
			case tc.alarm == "" && st.Alarm != "":
				t.Errorf("alarm %q, want none", st.Alarm)
			case tc.alarm != "" && !strings.Contains(st.Alarm, tc.alarm):
				t.Errorf("alarm %q, want one saying %q", st.Alarm, tc.alarm)
			}
		})
	}
}
