package audit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"testing"
)

// sampleLog writes a closed log of several files and returns it with its
// records.
func sampleLog(t *testing.T) (string, []Entry, *Writer) {
	t.Helper()
	dir := t.TempDir()
	key := newKey(t)
	w := openLog(t, dir, key, WithMaxFileSize(1500), WithCheckpointEvery(7))
	for _, id := range []string{"a", "b", "c", "d"} {
		writeSession(t, w, id, 3)
		if _, err := w.Checkpoint(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	es := entries(t, dir)
	if es[len(es)-1].File == FileName(0) {
		t.Fatal("sample log must span several files")
	}
	return dir, es, w
}

// rewrite re-encodes every record through mutate and re-chains all hashes,
// as an attacker with write access to the files could.
func rewrite(t *testing.T, dir string, mutate func(e Entry) Body) {
	t.Helper()
	es := entries(t, dir)
	files := map[string][]byte{}
	var order []string
	var prev Hash
	for i, e := range es {
		b := mutate(e)
		if rot, ok := b.(Rotation); ok && i > 0 {
			rot.PrevHead = append([]byte(nil), prev[:]...)
			b = rot
		}
		enc, err := encMode.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rec := e.Record
		if i > 0 {
			rec.Prev = append([]byte(nil), prev[:]...)
		}
		rec.Body = enc
		payload, err := encodeRecord(&rec)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := files[e.File]; !ok {
			files[e.File] = []byte(fileMagic)
			order = append(order, e.File)
		}
		files[e.File] = appendFrame(files[e.File], payload)
		prev = sha256.Sum256(payload)
	}
	for _, name := range order {
		mustWrite(t, dir+"/"+name, files[name])
	}
}

func firstOfKind(es []Entry, k Kind, after int) int {
	for i := after; i < len(es); i++ {
		if es[i].Record.Kind == k {
			return i
		}
	}
	return -1
}

func TestVerifyDetectsTampering(t *testing.T) {
	key := newKey(t)
	build := func(t *testing.T) (string, []Entry) {
		dir := t.TempDir()
		w := openLog(t, dir, key, WithMaxFileSize(1500), WithCheckpointEvery(7))
		for _, id := range []string{"a", "b", "c", "d"} {
			writeSession(t, w, id, 3)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		es := entries(t, dir)
		if es[len(es)-1].File == FileName(0) {
			t.Fatal("log must span several files")
		}
		if _, err := Verify(dir, trustOf(key)); err != nil {
			t.Fatalf("untouched log does not verify: %v", err)
		}
		return dir, es
	}
	// k is a payload record in the middle of file 0.
	pick := func(es []Entry) int {
		k := firstOfKind(es, KindPayload, 3)
		if es[k+1].File != es[k].File {
			panic("sample layout changed")
		}
		return k
	}
	cases := []struct {
		name   string
		tamper func(t *testing.T, dir string, es []Entry) (file string, seq int64)
		trust  func(Trust) Trust
		want   error
		// at, when set, is the offset the problem must name (in file)
		// and the seq of the good record just before it, for a record
		// that cannot be read (no seq of its own).
		at func(es []Entry) (offset int64, after uint64)
	}{
		{"flipped byte", func(t *testing.T, dir string, es []Entry) (string, int64) {
			k := pick(es)
			p := dir + "/" + es[k].File
			b := mustRead(t, p)
			b[es[k].Offset+es[k].Size/2] ^= 1
			mustWrite(t, p, b)
			return es[k].File, -1
		}, nil, ErrCRC, func(es []Entry) (int64, uint64) {
			k := pick(es)
			return es[k].Offset, es[k-1].Record.Seq
		}},
		{"deleted record", func(t *testing.T, dir string, es []Entry) (string, int64) {
			k := pick(es)
			p := dir + "/" + es[k].File
			b := mustRead(t, p)
			b = append(b[:es[k].Offset:es[k].Offset], b[es[k].Offset+es[k].Size:]...)
			mustWrite(t, p, b)
			return es[k].File, int64(es[k+1].Record.Seq)
		}, nil, ErrSeq, func(es []Entry) (int64, uint64) { return es[pick(es)].Offset, 0 }},
		{"two records swapped", func(t *testing.T, dir string, es []Entry) (string, int64) {
			k := pick(es)
			p := dir + "/" + es[k].File
			b := mustRead(t, p)
			a := append([]byte(nil), b[es[k].Offset:es[k].Offset+es[k].Size]...)
			c := append([]byte(nil), b[es[k+1].Offset:es[k+1].Offset+es[k+1].Size]...)
			out := append(append(append(append([]byte(nil), b[:es[k].Offset]...), c...), a...), b[es[k+1].Offset+es[k+1].Size:]...)
			mustWrite(t, p, out)
			return es[k].File, int64(es[k+1].Record.Seq)
		}, nil, ErrSeq, func(es []Entry) (int64, uint64) { return es[pick(es)].Offset, 0 }},
		{"older file truncated mid-record", func(t *testing.T, dir string, es []Entry) (string, int64) {
			p := fileOf(t, dir, 0)
			b := mustRead(t, p)
			mustWrite(t, p, b[:len(b)-5])
			return FileName(0), -1
		}, nil, ErrTruncated, func(es []Entry) (int64, uint64) {
			last := 0
			for i, e := range es {
				if e.File == FileName(0) {
					last = i
				}
			}
			return es[last].Offset, es[last-1].Record.Seq
		}},
		{"older file lost its last record", func(t *testing.T, dir string, es []Entry) (string, int64) {
			last := 0
			for i, e := range es {
				if e.File == FileName(0) {
					last = i
				}
			}
			p := fileOf(t, dir, 0)
			b := mustRead(t, p)
			mustWrite(t, p, b[:es[last].Offset])
			return FileName(1), int64(es[last+1].Record.Seq)
		}, nil, ErrSeq, nil},
		{"middle file missing", func(t *testing.T, dir string, es []Entry) (string, int64) {
			if err := os.Remove(fileOf(t, dir, 1)); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(fileOf(t, dir, 2)); err != nil {
				t.Skip("needs three files")
			}
			return FileName(1), -1
		}, nil, ErrFiles, nil},
		{"first file missing", func(t *testing.T, dir string, es []Entry) (string, int64) {
			if err := os.Remove(fileOf(t, dir, 0)); err != nil {
				t.Fatal(err)
			}
			return FileName(1), int64(firstSeqOf(es, FileName(1)))
		}, nil, ErrFiles, nil},
		{"forged checkpoint signature", func(t *testing.T, dir string, es []Entry) (string, int64) {
			k := firstOfKind(es, KindCheckpoint, 0)
			rewrite(t, dir, func(e Entry) Body {
				if e.Record.Seq == es[k].Record.Seq {
					cp := e.Body.(Checkpoint)
					cp.Signature = append([]byte(nil), cp.Signature...)
					cp.Signature[len(cp.Signature)-3] ^= 0x10
					return cp
				}
				return e.Body
			})
			return es[k].File, int64(es[k].Record.Seq)
		}, nil, ErrSignature, nil},
		{"history rewritten and re-chained", func(t *testing.T, dir string, es []Entry) (string, int64) {
			k := firstOfKind(es, KindSessionStart, 0)
			rewrite(t, dir, func(e Entry) Body {
				if e.Record.Seq == es[k].Record.Seq {
					s := e.Body.(SessionStart)
					s.User = "mallory"
					return s
				}
				return e.Body
			})
			c := firstOfKind(es, KindCheckpoint, k)
			return es[c].File, int64(es[c].Record.Seq)
		}, nil, ErrCheckpoint, nil},
		{"history rewritten with checkpoint heads updated", func(t *testing.T, dir string, es []Entry) (string, int64) {
			k := firstOfKind(es, KindSessionStart, 0)
			// First pass changes the record; second pass fixes heads to the new hashes.
			rewrite(t, dir, func(e Entry) Body {
				if e.Record.Seq == es[k].Record.Seq {
					s := e.Body.(SessionStart)
					s.User = "mallory"
					return s
				}
				return e.Body
			})
			hashes := map[uint64]Hash{}
			for _, e := range entries(t, dir) {
				hashes[e.Record.Seq] = e.Hash
			}
			rewrite(t, dir, func(e Entry) Body {
				if cp, ok := e.Body.(Checkpoint); ok {
					h := hashes[cp.Last]
					cp.Head = h[:]
					return cp
				}
				return e.Body
			})
			c := firstOfKind(es, KindCheckpoint, k)
			return es[c].File, int64(es[c].Record.Seq)
		}, nil, ErrSignature, nil},
		{"wrong trusted key", func(t *testing.T, dir string, es []Entry) (string, int64) {
			c := firstOfKind(es, KindCheckpoint, 0)
			return es[c].File, int64(es[c].Record.Seq)
		}, func(tr Trust) Trust { tr.PublicKey = &newKey(t).PublicKey; return tr }, ErrSignature, nil},
		{"wrong log id", func(t *testing.T, dir string, es []Entry) (string, int64) {
			return FileName(0), 0
		}, func(tr Trust) Trust { tr.LogID = "another-log"; return tr }, ErrLogID, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir, es := build(t)
			file, seq := tc.tamper(t, dir, es)
			tr := trustOf(key)
			if tc.trust != nil {
				tr = tc.trust(tr)
			}
			_, err := Verify(dir, tr)
			p := wantProblem(t, err, tc.want, file, seq)
			t.Logf("reported: %v", p)
			if tc.at != nil {
				off, after := tc.at(es)
				if p.Offset != off {
					t.Fatalf("problem at offset %d, want %d (the damaged record): %v", p.Offset, off, p)
				}
				if !p.HasSeq && (!p.HasAfter || p.After != after) {
					t.Fatalf("problem names the record after seq %d (known %v), want after seq %d: %v", p.After, p.HasAfter, after, p)
				}
			}
		})
	}
}

func firstSeqOf(es []Entry, file string) uint64 {
	for _, e := range es {
		if e.File == file {
			return e.Record.Seq
		}
	}
	return 0
}

func TestVerifyPartialLogWhenAllowed(t *testing.T) {
	dir, es, _ := sampleLog(t)
	_ = es
	if err := os.Remove(fileOf(t, dir, 0)); err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(dir, Trust{ChainOnly: true, AllowPartial: true})
	if err != nil {
		t.Fatalf("partial log with AllowPartial: %v", err)
	}
	if rep.FirstSeq == 0 {
		t.Fatalf("partial log reports first seq 0: %+v", rep)
	}
}

// A torn tail of the newest file (a power cut mid-write, or a truncation
// mid-record) is reported, not an error, unless RequireSealed (see also
// TestVerifyReportsTruncatedNewestFile).
func TestVerifyTornTailOfNewestFileIsNotAnError(t *testing.T) {
	dir := t.TempDir()
	key := newKey(t)
	w := openLog(t, dir, key)
	writeSession(t, w, "s", 2)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	es := entries(t, dir)
	p := fileOf(t, dir, 0)
	b := mustRead(t, p)
	mustWrite(t, p, b[:len(b)-3])
	rep, err := Verify(dir, trustOf(key))
	if err != nil {
		t.Fatalf("torn tail must not fail Verify: %v", err)
	}
	last := es[len(es)-1]
	if rep.Torn == nil || rep.Torn.Offset != last.Offset || rep.Records != uint64(len(es)-1) {
		t.Fatalf("want torn tail at offset %d and %d records, got %+v torn %+v", last.Offset, len(es)-1, rep, rep.Torn)
	}
	if rep.End != EndTorn || rep.EndOffset != last.Offset || rep.Unsigned == 0 {
		t.Fatalf("want a torn end at offset %d, the log-closed record left unsigned; got %+v", last.Offset, rep)
	}
	tr := trustOf(key)
	tr.RequireSealed = true
	_, err = Verify(dir, tr)
	if p := wantProblem(t, err, ErrNotSealed, FileName(0), -1); p.Offset != last.Offset {
		t.Fatalf("RequireSealed: problem at offset %d, want %d: %v", p.Offset, last.Offset, p)
	}
}

func TestVerifyReportsUnsignedTail(t *testing.T) {
	dir := t.TempDir()
	key := newKey(t)
	w := openLog(t, dir, key)
	// Events, not a session: a session's end asks the background loop
	// for a checkpoint, and when that one ran after the three appends
	// below (a loaded machine) it signed them.
	for i := 0; i < 4; i++ {
		if _, err := w.Append(context.Background(), Event{Type: "refusal", User: "alice"}); err != nil {
			t.Fatal(err)
		}
	}
	cp, err := w.Checkpoint(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, err := w.AppendBuffered(Event{Type: "refusal", User: "bob"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(dir, trustOf(key))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Unsigned != 3 || rep.SignedThrough != cp.Seq-1 || rep.LastSeq != cp.Seq+3 {
		t.Fatalf("want 3 unsigned records after seq %d, got %+v", cp.Seq, rep)
	}
	// Chain-only checks do not claim anything is signed.
	rep, err = Verify(dir, Trust{ChainOnly: true})
	if err != nil || rep.Signed || rep.SignaturesChecked {
		t.Fatalf("chain-only: %+v, %v", rep, err)
	}
	if _, err := Verify(dir, Trust{}); err == nil {
		t.Fatal("Verify without key and without ChainOnly must refuse")
	}
	w.Close()
}

func TestDecodeRejectsNonCanonical(t *testing.T) {
	es := entries(t, func() string { d, _, _ := sampleLog(t); return d }())
	payload, err := encodeRecord(&es[1].Record)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := DecodeRecord(payload); err != nil {
		t.Fatalf("canonical record rejected: %v", err)
	}
	// A map with keys out of canonical order, same content.
	var m map[int]any
	if err := decMode.Unmarshal(payload, &m); err != nil {
		t.Fatal(err)
	}
	lenient, _ := encMode.Marshal(m)
	if !bytes.Equal(lenient, payload) {
		t.Fatal("re-encoded map differs")
	}
	// The same map with key 1 (seq) given twice.
	if payload[0] != 0xa5 {
		t.Fatalf("record header %#x, want a 5-entry map", payload[0])
	}
	seqKV, _ := encMode.Marshal(1)
	seqV, _ := encMode.Marshal(es[1].Record.Seq)
	dup := append(append(append([]byte{0xa6}, seqKV...), seqV...), payload[1:]...)
	if _, _, _, err := DecodeRecord(dup); !errors.Is(err, ErrEncoding) {
		t.Fatalf("record with a duplicate key accepted: %v", err)
	}
	bad := append([]byte{payload[0]}, payload[1:]...)
	bad[0] = 0xbf // indefinite-length map header
	bad = append(bad, 0xff)
	if _, _, _, err := DecodeRecord(bad); !errors.Is(err, ErrEncoding) {
		t.Fatalf("indefinite-length record accepted: %v", err)
	}
}

// A checkpoint may land in the file after a rotation yet cover only
// records of the file before (it is appended a little after the head it
// signs). With that earlier file gone, AllowPartial accepts it (its
// signature checked, its head unmatched); a forged one is still refused,
// and without AllowPartial the missing file is an error. The file sizes
// are searched until that layout occurs, so the test cannot pass without
// it.
func TestVerifyPartialLogStartsAfterALateCheckpoint(t *testing.T) {
	key := newKey(t)
	for size := int64(600); size < 3000; size += 7 {
		dir := t.TempDir()
		w := openLog(t, dir, key, WithMaxFileSize(size))
		for _, id := range []string{"a", "b", "c", "d", "e"} {
			writeSession(t, w, id, 2)
			if _, err := w.Checkpoint(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		es := entries(t, dir)
		var late *Entry
		for i, e := range es {
			cp, ok := e.Body.(Checkpoint)
			if ok && e.File == FileName(1) && i > 0 && es[i-1].File == FileName(1) {
				if first := firstSeqOf(es, FileName(1)); cp.Last < first {
					late = &es[i]
					break
				}
			}
		}
		if late == nil {
			continue
		}
		if _, err := Verify(dir, trustOf(key)); err != nil {
			t.Fatalf("whole log: %v", err)
		}
		if err := os.Remove(fileOf(t, dir, 0)); err != nil {
			t.Fatal(err)
		}
		for _, trust := range []Trust{trustOf(key), {ChainOnly: true, AllowPartial: true}} {
			trust.AllowPartial = true
			rep, err := Verify(dir, trust)
			if err != nil {
				t.Fatalf("size %d, partial log from %s (checkpoint at seq %d covers the missing file): %v", size, FileName(1), late.Record.Seq, err)
			}
			if rep.FirstSeq == 0 || rep.Checkpoints == 0 {
				t.Fatalf("partial report %+v", rep)
			}
		}
		if _, err := Verify(dir, trustOf(key)); err == nil {
			t.Fatal("a log without its first file verified without AllowPartial")
		}
		other := trustOf(newKey(t))
		other.AllowPartial = true
		if _, err := Verify(dir, other); !errors.Is(err, ErrSignature) {
			t.Fatalf("partial log against another key: %v, want %v", err, ErrSignature)
		}
		return
	}
	t.Fatal("no file size put a checkpoint for the first file behind the rotation: the case is not exercised")
}
