package audit

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"runtime"
	"testing"
)

// logBuilder writes a log's files directly, laid out as the writer lays
// them out, but with checkpoints where a test puts them: behind the head
// by any number of records, or none for as long as it likes (a signer
// down). Records get fixed times, so two builds of one plan are the same
// bytes but for the (randomised) ECDSA signatures.
type logBuilder struct {
	t            testing.TB
	dir          string
	key          *ecdsa.PrivateKey
	keyID        string
	logID        string
	file         uint64
	buf          []byte // the current file
	head         Hash
	hashes       []Hash // every record's, by seq (the test's memory, not Verify's)
	at           []Entry
	nextUnsigned uint64
}

func newLogBuilder(t testing.TB, dir string, key *ecdsa.PrivateKey) *logBuilder {
	t.Helper()
	id, err := KeyID(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	b := &logBuilder{t: t, dir: dir, key: key, keyID: id, logID: "test-log", buf: []byte(fileMagic), head: Genesis("test-log")}
	b.add(Rotation{LogID: b.logID, File: 0, PrevHead: b.head[:]})
	return b
}

// seq is the seq the next record gets.
func (b *logBuilder) seq() uint64 { return uint64(len(b.hashes)) }

// add appends a record and returns its seq.
func (b *logBuilder) add(body Body) uint64 {
	b.t.Helper()
	enc, err := encodeBody(body)
	if err != nil {
		b.t.Fatal(err)
	}
	seq := b.seq()
	rec := Record{Seq: seq, Time: Timestamp(1_800_000_000_000_000_000 + int64(seq)), Prev: append([]byte(nil), b.head[:]...), Kind: body.Kind(), Body: enc}
	payload, err := encodeRecord(&rec)
	if err != nil {
		b.t.Fatal(err)
	}
	off := int64(len(b.buf))
	b.buf = appendFrame(b.buf, payload)
	b.head = sha256.Sum256(payload)
	b.hashes = append(b.hashes, b.head)
	b.at = append(b.at, Entry{File: FileName(b.file), Offset: off, Size: int64(len(b.buf)) - off, Record: rec, Hash: b.head})
	return seq
}

// payloads appends n payload records; the i-th carries byte tag^i.
func (b *logBuilder) payloads(n int, tag byte) {
	for i := 0; i < n; i++ {
		b.add(Payload{SessionID: "s1", First: 1, Direction: ToAsset, Bytes: 12, Raw: []byte{0, byte(i), 0, 0, 0, 6, 1, 3, 0, 0, 0, tag ^ byte(i)}})
	}
}

// checkpoint appends a checkpoint that signs record last (from the seq
// after the previous checkpoint's last) and returns its seq.
func (b *logBuilder) checkpoint(last uint64) uint64 {
	return b.checkpointHead(last, b.hashes[last])
}

// checkpointHead is checkpoint with the head given (a wrong one, for
// tests of a forged log).
func (b *logBuilder) checkpointHead(last uint64, head Hash) uint64 {
	b.t.Helper()
	cp, err := signCheckpoint(b.key, b.keyID, b.logID, b.nextUnsigned, last, head)
	if err != nil {
		b.t.Fatal(err)
	}
	b.nextUnsigned = last + 1
	return b.add(cp)
}

// rotate writes the current file and starts the next.
func (b *logBuilder) rotate() {
	b.flush()
	prev := FileName(b.file)
	b.file++
	b.buf = []byte(fileMagic)
	b.add(Rotation{LogID: b.logID, File: b.file, PrevHead: append([]byte(nil), b.head[:]...), PrevFile: prev, NextUnsigned: b.nextUnsigned})
}

// seal ends the log as Close does (log-closed event, the checkpoint
// signing it) and writes the current file.
func (b *logBuilder) seal() {
	b.checkpoint(b.add(Event{Type: EventLogClosed, Reason: "clean shutdown"}))
	b.flush()
}

func (b *logBuilder) flush() { mustWrite(b.t, fileOf(b.t, b.dir, b.file), b.buf) }

// allocsOfVerify returns the bytes Verify allocates checking dir.
func allocsOfVerify(t *testing.T, dir string, trust Trust) uint64 {
	t.Helper()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	rep, err := Verify(dir, trust)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatalf("Verify(%s): %v", dir, err)
	}
	if rep.End != EndSealed {
		t.Fatalf("%s: want a sealed log, got %s", dir, rep.EndSummary())
	}
	return after.TotalAlloc - before.TotalAlloc
}

// Verify's memory must not grow with the longest stretch of records no
// checkpoint covers (a signer down for long, a forged log without
// checkpoints). Measured without a hook into Verify: two logs of the same
// records, one checkpointed every 64 records, one with a single checkpoint
// at the end. A verifier that holds every unsigned record's hash (as
// Verify did: 65 bytes a record, in slices grown by doubling) allocates
// well over 10 MB more for the second; one that holds a bounded window
// allocates less for it (fewer checkpoint records to decode). The margin,
// 2 MiB, is far from both. Chain-only, so that signature checks (their
// allocations) do not differ between the two.
func TestVerifyAllocatesNoMoreForAnUnsignedStretch(t *testing.T) {
	const n = 100_000
	key := newKey(t)
	build := func(every int) string {
		dir := t.TempDir()
		b := newLogBuilder(t, dir, key)
		for done := 0; done < n; done += every {
			b.payloads(min(every, n-done), 0)
			b.checkpoint(b.seq() - 1)
			if done%(n/4) < every && done > 0 {
				b.rotate()
			}
		}
		b.seal()
		return dir
	}
	checkpointed, stretch := build(64), build(n)
	trust := Trust{ChainOnly: true}
	a := allocsOfVerify(t, checkpointed, trust)
	s := allocsOfVerify(t, stretch, trust)
	t.Logf("Verify allocated %.1f MB for %d records checkpointed every 64, %.1f MB with all of them unsigned until the end",
		float64(a)/1e6, n, float64(s)/1e6)
	if s > a+2<<20 {
		t.Fatalf("Verify allocated %d bytes more for a log whose %d records are signed by one checkpoint at the end than for the same records checkpointed every 64: it holds something for every unsigned record",
			s-a, n)
	}
}
