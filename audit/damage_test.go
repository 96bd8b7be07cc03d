package audit

import (
	"encoding/binary"
	"errors"
	"testing"
)

// A bit flipped in the length field of a record in the middle of the
// newest file, making it run past the end of the file, is damage, not a
// torn tail: a complete record and more records follow the header. It used
// to be reported as a torn tail (verify succeeded) and Open cut every
// acknowledged record after it out of the log into a side file.
func TestDamagedLengthFieldIsNotATornTail(t *testing.T) {
	key := newKey(t)
	src := t.TempDir()
	w := openLog(t, src, key)
	for _, id := range []string{"a", "b", "c"} {
		writeSession(t, w, id, 2)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	es := entries(t, src)
	k := firstOfKind(es, KindPayload, 3)
	full := mustRead(t, fileOf(t, src, 0))
	rest := int64(len(full)) - es[k].Offset
	for _, bit := range []uint{12, 13, 14, 15, 16, 17, 18, 19} {
		b := append([]byte(nil), full...)
		n := binary.BigEndian.Uint32(b[es[k].Offset:])
		n ^= 1 << bit
		if int64(n) <= rest-frameHeaderSize || n > MaxRecordSize {
			continue // not past the end of the file: a CRC error, tested elsewhere
		}
		binary.BigEndian.PutUint32(b[es[k].Offset:], n)
		dir := copyDir(t, src)
		mustWrite(t, fileOf(t, dir, 0), b)
		rep, err := Verify(dir, trustOf(key))
		p := wantProblem(t, err, ErrFraming, FileName(0), -1)
		if p.Offset != es[k].Offset || !p.HasAfter || p.After != es[k-1].Record.Seq {
			t.Fatalf("bit %d: problem %v, want offset %d after seq %d", bit, p, es[k].Offset, es[k-1].Record.Seq)
		}
		if rep.Torn != nil {
			t.Fatalf("bit %d: reported as a torn tail: %v", bit, rep.Torn)
		}
		if _, err := Open(dir, key, WithLogID("test-log")); !errors.Is(err, ErrFraming) {
			t.Fatalf("bit %d: Open = %v, want ErrFraming", bit, err)
		}
		if got := mustRead(t, fileOf(t, dir, 0)); string(got) != string(b) {
			t.Fatalf("bit %d: Open changed the damaged file", bit)
		}
		// The syslog exporter's follower stalled there for good ("still
		// being written"), exporting nothing more and saying nothing.
		f := NewFollower(dir, 0, false)
		for {
			e, ok, err := f.TryNext()
			if err != nil {
				if !errors.Is(err, ErrFraming) {
					t.Fatalf("bit %d: follower: %v, want ErrFraming", bit, err)
				}
				break
			}
			if !ok {
				t.Fatalf("bit %d: the follower waits at the damaged record as if it were being written", bit)
			}
			if e.Record.Seq >= es[k].Record.Seq {
				t.Fatalf("bit %d: follower read seq %d past the damage", bit, e.Record.Seq)
			}
		}
		t.Logf("bit %d: %v", bit, err)
	}
}

// The same damage with the length landing exactly at the end of the file:
// the frame then fails its CRC as a torn last record would, but a complete
// record with a matching CRC follows its header, and more after it. It
// used to verify as a torn tail, and Open cut the signed records after it
// (a session end, the seal) into a side file.
func TestDamagedLengthToTheEndIsNotATornTail(t *testing.T) {
	key := newKey(t)
	src := t.TempDir()
	w := openLog(t, src, key)
	writeSession(t, w, "s1", 3)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	es := entries(t, src)
	k := -1
	for i, e := range es {
		if e.Record.Kind == KindSessionEnd {
			k = i
		}
	}
	if k < 0 || k == len(es)-1 {
		t.Fatalf("no session end with records after it in %d records", len(es))
	}
	b := mustRead(t, fileOf(t, src, 0))
	binary.BigEndian.PutUint32(b[es[k].Offset:], uint32(int64(len(b))-es[k].Offset-frameHeaderSize))
	dir := copyDir(t, src)
	mustWrite(t, fileOf(t, dir, 0), b)
	rep, err := Verify(dir, trustOf(key))
	if p := wantProblem(t, err, ErrFraming, FileName(0), -1); p.Offset != es[k].Offset {
		t.Fatalf("problem %v, want it at offset %d", p, es[k].Offset)
	}
	if rep.Torn != nil {
		t.Fatalf("reported as a torn tail: %v", rep.Torn)
	}
	if _, err := Open(dir, key, WithLogID("test-log")); !errors.Is(err, ErrFraming) {
		t.Fatalf("Open = %v, want ErrFraming", err)
	}
	if got := mustRead(t, fileOf(t, dir, 0)); string(got) != string(b) {
		t.Fatal("Open changed the damaged file")
	}
}
