package audit

import (
	"context"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
)

// withWindow makes Verify hold at most n record hashes for the test.
func withWindow(t testing.TB, n int) {
	old := verifyWindow
	verifyWindow = n
	t.Cleanup(func() { verifyWindow = old })
}

// withRereadHook runs f once, before Verify first reads records again.
func withRereadHook(t testing.TB, f func()) {
	done := false
	rereadHook = func() {
		if !done {
			done = true
			f()
		}
	}
	t.Cleanup(func() { rereadHook = nil })
}

func verifyWithStats(dir string, trust Trust) (*Report, verifyStats, error) {
	var st verifyStats
	rep, err := verify(dir, trust, &st)
	return rep, st, err
}

// A stretch of records no checkpoint covers, ten times the window long,
// costs Verify no more held hashes than one twice the window long, and it
// still reports where the stretch starts when no checkpoint ever comes; a
// checkpoint at its end is checked against a hash Verify still holds (no
// second read).
func TestVerifyHoldsAWindowOfHashesWhateverTheUnsignedStretch(t *testing.T) {
	key := newKey(t)
	held := map[bool][]int{}
	for _, n := range []int{2 * verifyWindow, 10 * verifyWindow} {
		for _, signed := range []bool{true, false} {
			dir := t.TempDir()
			b := newLogBuilder(t, dir, key)
			b.payloads(10, 0)
			b.checkpoint(b.seq() - 1)
			from := b.seq()
			b.payloads(n/2, 1)
			b.rotate()
			b.payloads(n/2, 2)
			last := b.seq() - 1
			if signed {
				b.checkpoint(last)
				b.payloads(3, 3)
				b.seal()
			} else {
				b.flush()
			}
			rep, st, err := verifyWithStats(dir, trustOf(key))
			if err != nil {
				t.Fatalf("stretch of %d, signed %v: %v", n, signed, err)
			}
			t.Logf("stretch of %d records, signed at its end %v: held %d hashes at most, read %d records again", n, signed, st.maxHeld, st.reread)
			if st.maxHeld > verifyWindow {
				t.Fatalf("stretch of %d: Verify held %d record hashes at once, want at most %d (verifyWindow)", n, st.maxHeld, verifyWindow)
			}
			held[signed] = append(held[signed], st.maxHeld)
			if signed {
				if rep.End != EndSealed || rep.Unsigned != 0 || st.reread != 0 {
					t.Fatalf("stretch of %d signed at its end: want sealed, nothing unsigned, nothing read again; got %s, %d unsigned, %d read again",
						n, rep.EndSummary(), rep.Unsigned, st.reread)
				}
				continue
			}
			want := b.at[from]
			if rep.Unsigned != last-from+1 || rep.UnsignedFrom != from || rep.End != EndUnsealed ||
				rep.EndFile != want.File || rep.EndOffset != want.Offset {
				t.Fatalf("unsigned stretch of %d: want %d unsigned from seq %d at %s offset %d; got %d from seq %d, %s",
					n, last-from+1, from, want.File, want.Offset, rep.Unsigned, rep.UnsignedFrom, rep.EndSummary())
			}
			if st.reread > 2 {
				t.Fatalf("unsigned stretch of %d: read %d records again to find where it starts, want at most 2 (the checkpoint before it and its first record)", n, st.reread)
			}
		}
	}
	for signed, h := range held {
		if h[0] != h[1] {
			t.Fatalf("signed %v: held %d hashes for a stretch of %d records, %d for one of %d: it grows with the stretch",
				signed, h[0], 2*verifyWindow, h[1], 10*verifyWindow)
		}
	}
}

// lateLog writes a log (window 16 in mind) whose first two checkpoints
// sign records far behind them (80 and 71 records back, spilled out of the
// window), the third one a head 5 records back (in the window). tag25
// changes record 25 only (the records before it are the same bytes).
// lateHead, when not nil, is the head the first checkpoint signs for
// record 20 instead of its hash.
func lateLog(t *testing.T, dir string, b *logBuilder, tag25 byte, lateHead *Hash) (late1, late2, third uint64) {
	t.Helper()
	b.payloads(24, 0)
	b.payloads(1, tag25)
	b.payloads(75, 0)
	if lateHead != nil {
		late1 = b.checkpointHead(20, *lateHead)
	} else {
		late1 = b.checkpoint(20)
	}
	late2 = b.checkpoint(30)
	b.payloads(50, 0)
	b.rotate()
	b.payloads(50, 0)
	third = b.checkpoint(b.seq() - 5)
	b.payloads(10, 0)
	b.seal()
	return late1, late2, third
}

// A checkpoint may sign a head further back than the records Verify holds
// hashes for: it reads those records again from disk (each at most once),
// checks the head against them, and names a wrong head exactly as it does
// one inside the window.
func TestVerifyChecksACheckpointThatSignsFarBehind(t *testing.T) {
	key := newKey(t)
	dir := t.TempDir()
	b := newLogBuilder(t, dir, key)
	lateLog(t, dir, b, 0, nil)
	want, err := Verify(dir, trustOf(key))
	if err != nil || want.End != EndSealed || want.Checkpoints != 4 {
		t.Fatalf("the default window: %v, %+v", err, want)
	}
	withWindow(t, 16)
	rep, st, err := verifyWithStats(dir, trustOf(key))
	if err != nil {
		t.Fatalf("window 16: %v", err)
	}
	t.Logf("window 16: held %d hashes at most, read %d of %d records again", st.maxHeld, st.reread, rep.Records)
	if st.maxHeld > 16 || st.reread == 0 || st.reread > rep.Records {
		t.Fatalf("window 16: held %d hashes, read %d records again (of %d); want at most 16 held, some but not more than the log read again",
			st.maxHeld, st.reread, rep.Records)
	}
	if !reflect.DeepEqual(rep, want) {
		t.Fatalf("window 16 reports\n%+v\nthe default window\n%+v", rep, want)
	}

	// The same log, its first checkpoint signing a head that is not the
	// hash of record 20.
	dir = t.TempDir()
	b = newLogBuilder(t, dir, key)
	wrong := Hash{0xaa, 0x55}
	late1, _, _ := lateLog(t, dir, b, 0, &wrong)
	wantMsg := ""
	for _, w := range []int{16, 4096} {
		withWindow(t, w)
		_, err := Verify(dir, trustOf(key))
		p := wantProblem(t, err, ErrCheckpoint, b.at[late1].File, int64(late1))
		if !strings.Contains(err.Error(), "is not the hash of record 20") {
			t.Fatalf("window %d: %v, want it to say the head is not the hash of record 20", w, err)
		}
		if wantMsg == "" {
			wantMsg = p.Error()
		} else if p.Error() != wantMsg {
			t.Fatalf("window %d reports %q, window 16 %q", w, p.Error(), wantMsg)
		}
	}
}

// A record read a second time must be the one read the first time: a log
// changed between the two reads is reported as such (ErrChanged), at the
// record where the difference shows, not as a bad checkpoint, and never
// verifies.
func TestVerifyReportsALogChangedBetweenItsReads(t *testing.T) {
	key := newKey(t)
	withWindow(t, 16)
	t.Run("byte flipped", func(t *testing.T) {
		dir := t.TempDir()
		b := newLogBuilder(t, dir, key)
		lateLog(t, dir, b, 0, nil)
		e := b.at[10]
		withRereadHook(t, func() {
			path := fileOf(t, dir, 0)
			raw := mustRead(t, path)
			raw[e.Offset+e.Size-2] ^= 1
			mustWrite(t, path, raw)
		})
		_, err := Verify(dir, trustOf(key))
		p := wantProblem(t, err, ErrChanged, e.File, 10)
		if !errors.Is(err, ErrCRC) || p.Offset != e.Offset {
			t.Fatalf("want a CRC mismatch at offset %d, got %v", e.Offset, err)
		}
		t.Logf("reported: %v", err)
	})
	t.Run("records rewritten and re-chained", func(t *testing.T) {
		dir, other := t.TempDir(), t.TempDir()
		b := newLogBuilder(t, dir, key)
		_, late2, _ := lateLog(t, dir, b, 0, nil)
		lateLog(t, other, newLogBuilder(t, other, key), 0x5a, nil)
		// The second read finds the log with record 25 changed and every
		// later record re-chained: the records read again link, and
		// record 30 hashes differently, but the chain leads to the oldest
		// record held, whose hash gives the change away.
		withRereadHook(t, func() {
			for _, f := range []uint64{0, 1} {
				mustWrite(t, fileOf(t, dir, f), mustRead(t, fileOf(t, other, f)))
			}
		})
		_, err := Verify(dir, trustOf(key))
		held := late2 - 16
		p := wantProblem(t, err, ErrChanged, FileName(0), int64(held))
		if errors.Is(err, ErrCheckpoint) || !strings.Contains(p.Error(), "when it was checked") {
			t.Fatalf("want the change named at the oldest record held (seq %d), got %v", held, err)
		}
		t.Logf("reported: %v", err)
	})
	t.Run("unchanged", func(t *testing.T) {
		dir := t.TempDir()
		lateLog(t, dir, newLogBuilder(t, dir, key), 0, nil)
		ran := false
		withRereadHook(t, func() { ran = true })
		if _, err := Verify(dir, trustOf(key)); err != nil || !ran {
			t.Fatalf("unchanged log: %v (read again: %v)", err, ran)
		}
	})
}

// How much Verify holds changes nothing it reports: the same logs (clean,
// damaged, forged, torn, partial, unsigned, with checkpoints far behind
// their heads) verified holding 1, 2, 3 or 8 record hashes give the report
// and the error the default window gives, to the byte.
func TestVerifyGivesTheSameAnswerWithAnyWindow(t *testing.T) {
	key := newKey(t)
	type scenario struct {
		name  string
		dir   string
		trust Trust
	}
	var scenarios []scenario
	add := func(name, dir string, trusts ...Trust) {
		for i, tr := range trusts {
			scenarios = append(scenarios, scenario{name: name + "/" + string(rune('a'+i)), dir: dir, trust: tr})
		}
	}
	strict := trustOf(key)
	strict.RequireSealed = true
	closed := func() (string, []Entry) {
		dir := t.TempDir()
		w := openLog(t, dir, key, WithMaxFileSize(1500), WithCheckpointEvery(7))
		for _, id := range []string{"a", "b", "c", "d"} {
			writeSession(t, w, id, 3)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		return dir, entries(t, dir)
	}
	dir, _ := closed()
	add("closed", dir, trustOf(key), Trust{ChainOnly: true}, strict)

	dir, es := closed()
	k := firstOfKind(es, KindPayload, 3)
	raw := mustRead(t, dir+"/"+es[k].File)
	raw[es[k].Offset+es[k].Size/2] ^= 1
	mustWrite(t, dir+"/"+es[k].File, raw)
	add("flipped byte", dir, trustOf(key))

	dir, es = closed()
	k = firstOfKind(es, KindSessionStart, 0)
	rewrite(t, dir, func(e Entry) Body {
		if s, ok := e.Body.(SessionStart); ok && e.Record.Seq == es[k].Record.Seq {
			s.User = "mallory"
			return s
		}
		return e.Body
	})
	add("rewritten", dir, trustOf(key), Trust{ChainOnly: true})

	dir, es = closed()
	c := firstOfKind(es, KindCheckpoint, 0)
	rewrite(t, dir, func(e Entry) Body {
		if cp, ok := e.Body.(Checkpoint); ok && e.Record.Seq == es[c].Record.Seq {
			cp.Signature = append([]byte(nil), cp.Signature...)
			cp.Signature[len(cp.Signature)-3] ^= 0x10
			return cp
		}
		return e.Body
	})
	add("forged signature", dir, trustOf(key))

	dir, es = closed()
	newest := dir + "/" + es[len(es)-1].File
	raw = mustRead(t, newest)
	mustWrite(t, newest, raw[:len(raw)-3])
	add("torn", dir, trustOf(key), strict)

	dir, _ = closed()
	if err := os.Remove(fileOf(t, dir, 0)); err != nil {
		t.Fatal(err)
	}
	partial := trustOf(key)
	partial.AllowPartial = true
	add("partial", dir, partial, Trust{ChainOnly: true, AllowPartial: true})

	dir = t.TempDir()
	w := openLog(t, dir, key)
	writeSession(t, w, "s", 1)
	if _, err := w.Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		if _, err := w.AppendBuffered(Event{Type: "refusal", User: "bob"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	add("unsigned tail", dir, trustOf(key), strict)
	t.Cleanup(func() { w.Close() })

	dir = t.TempDir()
	lateLog(t, dir, newLogBuilder(t, dir, key), 0, nil)
	add("late checkpoints", dir, trustOf(key), Trust{ChainOnly: true}, strict)

	dir = t.TempDir()
	b := newLogBuilder(t, dir, key)
	b.payloads(40, 0)
	b.checkpoint(3)
	b.payloads(40, 0)
	b.flush()
	add("late checkpoint, unsigned after", dir, trustOf(key))

	def := verifyWindow
	for _, s := range scenarios {
		want, wantErr := Verify(s.dir, s.trust)
		for _, n := range []int{1, 2, 3, 8} {
			withWindow(t, n)
			got, err := Verify(s.dir, s.trust)
			verifyWindow = def
			if errString(err) != errString(wantErr) {
				t.Fatalf("%s, window %d: error %q, the default window %q", s.name, n, errString(err), errString(wantErr))
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("%s, window %d: report\n%+v\nthe default window\n%+v", s.name, n, got, want)
			}
		}
		t.Logf("%s: same report and error (%q) with every window", s.name, errString(wantErr))
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// BenchmarkVerifyUnsignedStretch verifies a log of 200,000 records that
// no checkpoint covers (a signer down) and reports how many record hashes
// Verify held at once and the bytes it allocated per record.
func BenchmarkVerifyUnsignedStretch(b *testing.B) {
	const n = 200_000
	dir := b.TempDir()
	key := newKey(b)
	lb := newLogBuilder(b, dir, key)
	lb.payloads(n, 0)
	lb.flush()
	trust := trustOf(key)
	b.ReportAllocs()
	var st verifyStats
	for b.Loop() {
		rep, err := verify(dir, trust, &st)
		if err != nil || rep.Unsigned != n+1 {
			b.Fatalf("%v, %+v", err, rep)
		}
	}
	b.ReportMetric(float64(st.maxHeld), "held-hashes")
	b.ReportMetric(float64(st.reread), "reread-records")
}
