package audit

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// TestCloseSealsTheLog: Close ends the newest file with a log-closed
// record and the checkpoint signing it, in the same file even when the
// file is full; Verify reports the end as sealed and RequireSealed accepts
// it, with and without signatures. A reopen with nothing appended leaves
// the log as it was.
func TestCloseSealsTheLog(t *testing.T) {
	dir := t.TempDir()
	key := newKey(t)
	w := openLog(t, dir, key, WithMaxFileSize(1500), WithCheckpointEvery(7))
	for _, id := range []string{"a", "b", "c", "d"} {
		writeSession(t, w, id, 3)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	check := func(what string) {
		t.Helper()
		es := entries(t, dir)
		n := len(es)
		ev, ok := es[n-2].Body.(Event)
		cp, isCP := es[n-1].Body.(Checkpoint)
		if !ok || ev.Type != EventLogClosed || !isCP || cp.Last != es[n-2].Record.Seq || es[n-1].File != es[n-2].File {
			t.Fatalf("%s: the log does not end with a log-closed record and its checkpoint: %+v, %+v", what, es[n-2], es[n-1])
		}
		newest := es[n-1].File
		if newest == FileName(0) {
			t.Fatal("the log must span several files")
		}
		for _, tr := range []Trust{trustOf(key), {ChainOnly: true}} {
			tr.RequireSealed = true
			rep, err := Verify(dir, tr)
			if err != nil {
				t.Fatalf("%s: a cleanly closed log fails RequireSealed (chain-only %v): %v", what, tr.ChainOnly, err)
			}
			if rep.End != EndSealed || rep.EndFile != newest || rep.EndOffset != es[n-2].Offset || len(rep.Recoveries) != 0 {
				t.Fatalf("%s: want a sealed end at %s offset %d, got %+v", what, newest, es[n-2].Offset, rep)
			}
			if tr.ChainOnly != strings.Contains(rep.EndSummary(), "NOT checked") {
				t.Fatalf("%s: summary %q (chain-only %v)", what, rep.EndSummary(), tr.ChainOnly)
			}
		}
	}
	check("closed")
	before := len(entries(t, dir))
	w = openLog(t, dir, key, WithMaxFileSize(1500))
	if w.Recovery() != "" {
		t.Fatalf("a sealed log was recovered on open: %s", w.Recovery())
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if after := len(entries(t, dir)); after != before {
		t.Fatalf("open and close of a sealed log added %d records", after-before)
	}
	check("reopened and closed")
}

// The log's own event types cannot be appended by a caller: a log-closed
// record that a caller wrote could otherwise help fake a seal.
func TestAppendRefusesTheLogsOwnEvents(t *testing.T) {
	w := openLog(t, t.TempDir(), newKey(t))
	defer w.Close()
	for _, typ := range []string{EventLogClosed, EventLogRecovered} {
		if _, err := w.Append(context.Background(), Event{Type: typ}); !errors.Is(err, ErrInvalidBody) {
			t.Errorf("Append of a %s event = %v, want ErrInvalidBody", typ, err)
		}
		if _, err := w.AppendBuffered(&Event{Type: typ}); !errors.Is(err, ErrInvalidBody) {
			t.Errorf("AppendBuffered of a *%s event = %v, want ErrInvalidBody", typ, err)
		}
	}
}

// truncLog writes a closed log whose layout the truncation cases rely on:
//
//	seq 0 rotation, 1-3 events, 4 checkpoint (0..3), 5-7 events,
//	8 log-closed, 9 checkpoint (4..8)
func truncLog(t *testing.T, key *ecdsa.PrivateKey) (string, []Entry) {
	t.Helper()
	dir := t.TempDir()
	w := openLog(t, dir, key)
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		if _, err := w.Append(ctx, Event{Type: "login-failure", User: "mallory", Reason: fmt.Sprint("bad code ", i)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, err := w.AppendBuffered(Event{Type: "refusal", User: "bob", Reason: fmt.Sprint("no grant ", i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	es := entries(t, dir)
	kinds := ""
	for _, e := range es {
		kinds += fmt.Sprint(int(e.Record.Kind))
	}
	if kinds != "1444644446" || es[4].Body.(Checkpoint).Last != 3 || es[8].Body.(Event).Type != EventLogClosed {
		t.Fatalf("layout changed: kinds %s", kinds)
	}
	return dir, es
}

// TestVerifyReportsTruncatedNewestFile cuts the newest file at record
// boundaries and mid-record, including right after a checkpoint: Verify
// reports each end (torn, or unsealed with the records no signature
// covers), RequireSealed makes each an error naming file and offset, and
// the writer reopening the log records the unclean end in the chain, so
// that after its clean close the log is sealed again and the recovery is
// signed.
func TestVerifyReportsTruncatedNewestFile(t *testing.T) {
	key := newKey(t)
	src, es := truncLog(t, key)
	full := mustRead(t, fileOf(t, src, 0))
	size := int64(len(full))
	cases := []struct {
		name     string
		cut      int64
		end      EndState
		offset   int64  // Report.EndOffset and the problem's offset
		unsigned uint64 // Report.Unsigned
		from     uint64 // Report.UnsignedFrom when unsigned > 0
		recovery string // in the log-recovered record written on reopen
	}{
		{"seal checkpoint cut mid-record", size - 3, EndTorn, es[9].Offset, 4, 5,
			fmt.Sprintf("truncated %d bytes at offset %d of %s", size-3-es[9].Offset, es[9].Offset, FileName(0))},
		{"seal checkpoint removed", es[9].Offset, EndUnsealed, es[5].Offset, 4, 5,
			fmt.Sprintf("ended at seq 8 (%s offset %d) without a log-closed record; nothing truncated", FileName(0), es[9].Offset)},
		{"seal removed", es[8].Offset, EndUnsealed, es[5].Offset, 3, 5, "ended at seq 7"},
		{"unsigned record cut mid-record", es[6].Offset + 5, EndTorn, es[6].Offset, 1, 5,
			fmt.Sprintf("truncated 5 bytes at offset %d", es[6].Offset)},
		{"cut right after a checkpoint", es[5].Offset, EndUnsealed, es[5].Offset, 0, 0,
			fmt.Sprintf("ended at seq 4 (%s offset %d) without a log-closed record", FileName(0), es[5].Offset)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyDir(t, src)
			mustWrite(t, fileOf(t, dir, 0), full[:tc.cut])
			rep, err := Verify(dir, trustOf(key))
			if err != nil {
				t.Fatalf("without RequireSealed a cut newest file is reported, not an error: %v", err)
			}
			t.Logf("%s", rep.EndSummary())
			if rep.End != tc.end || rep.EndFile != FileName(0) || rep.EndOffset != tc.offset || rep.Unsigned != tc.unsigned ||
				(tc.unsigned > 0 && rep.UnsignedFrom != tc.from) || rep.SignedThrough != 3 {
				t.Fatalf("want end %v at offset %d with %d unsigned from seq %d, signed through 3; got %+v", tc.end, tc.offset, tc.unsigned, tc.from, rep)
			}
			if (rep.Torn != nil) != (tc.end == EndTorn) {
				t.Fatalf("torn %v for end %v", rep.Torn, tc.end)
			}
			if tc.unsigned > 0 && !strings.Contains(rep.EndSummary(), fmt.Sprintf("%d records from seq %d", tc.unsigned, tc.from)) &&
				!strings.Contains(rep.EndSummary(), "torn") {
				t.Fatalf("summary does not name the unverified records: %s", rep.EndSummary())
			}
			for _, tr := range []Trust{trustOf(key), {ChainOnly: true}} {
				tr.RequireSealed = true
				_, err = Verify(dir, tr)
				p := wantProblem(t, err, ErrNotSealed, FileName(0), -1)
				wantOff := tc.offset
				if tr.ChainOnly && tc.end == EndUnsealed {
					wantOff = tc.cut // without signatures: where the seal is missing
				}
				if p.Offset != wantOff {
					t.Fatalf("RequireSealed (chain-only %v): problem at offset %d, want %d: %v", tr.ChainOnly, p.Offset, wantOff, p)
				}
				if !tr.ChainOnly && tc.end == EndUnsealed && tc.unsigned > 0 && (!p.HasSeq || p.Seq != tc.from) {
					t.Fatalf("RequireSealed: problem does not name seq %d, the first unverified record: %v", tc.from, p)
				}
				t.Logf("RequireSealed (chain-only %v): %v", tr.ChainOnly, p)
			}

			// Reopen: the unclean end goes into the chain.
			w, err := Open(dir, key, WithLogID("test-log"))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(w.Recovery(), "recovered after unclean shutdown: ") || !strings.Contains(w.Recovery(), tc.recovery) {
				t.Fatalf("Recovery() = %q, want it to contain %q", w.Recovery(), tc.recovery)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			tr := trustOf(key)
			tr.RequireSealed = true
			rep, err = Verify(dir, tr)
			if err != nil {
				t.Fatalf("after recovery and a clean close: %v", err)
			}
			if len(rep.Recoveries) != 1 || rep.Recoveries[0].Reason != w.Recovery() || rep.Unsigned != 0 || rep.SignedThrough < rep.Recoveries[0].Seq {
				t.Fatalf("the recovery is not a signed record of the log: %+v", rep)
			}
		})
	}
}

// A log cut before its first checkpoint (a crash early in its life), with
// signatures checked: every record is unverified, and the report names
// the first of them by seq and offset alike (the offset used to be the
// end of the log while the seq was the first record's).
func TestVerifyUnsealedBeforeAnyCheckpoint(t *testing.T) {
	key := newKey(t)
	src, es := truncLog(t, key)
	full := mustRead(t, fileOf(t, src, 0))
	dir := copyDir(t, src)
	mustWrite(t, fileOf(t, dir, 0), full[:es[4].Offset]) // before the first checkpoint
	rep, err := Verify(dir, trustOf(key))
	if err != nil {
		t.Fatal(err)
	}
	if rep.End != EndUnsealed || rep.Unsigned != 4 || rep.UnsignedFrom != es[0].Record.Seq || rep.EndOffset != es[0].Offset {
		t.Fatalf("want unsealed with 4 unverified records from seq %d at offset %d; got %+v", es[0].Record.Seq, es[0].Offset, rep)
	}
	want := fmt.Sprintf("4 records from seq %d (%s offset %d)", es[0].Record.Seq, FileName(0), es[0].Offset)
	if !strings.Contains(rep.EndSummary(), want) {
		t.Fatalf("summary %q lacks %q", rep.EndSummary(), want)
	}
	tr := trustOf(key)
	tr.RequireSealed = true
	_, err = Verify(dir, tr)
	if p := wantProblem(t, err, ErrNotSealed, FileName(0), int64(es[0].Record.Seq)); p.Offset != es[0].Offset {
		t.Fatalf("RequireSealed: %v, want offset %d", p, es[0].Offset)
	}
}
