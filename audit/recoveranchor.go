package audit

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"sort"
)

// anchorIndexEvery is how many records apart anchorScan notes where a
// record is: signedAnchor reads at most that many again.
const anchorIndexEvery = 256

// anchorScan collects, while Open reads the newest file, what it needs to
// find the last anchor value a checkpoint of this writer's key signs (see
// signedAnchor), in memory that grows with one position per
// anchorIndexEvery records, not with the records, nor with the anchor
// records (a forged file may be made of nothing else):
//
//   - the checkpoint of this key, read after the first anchor record,
//     that signs furthest (the highest Last below its own seq): every
//     record up to its Last is covered by it, the anchor records among
//     them included, so it alone decides the answer;
//   - from the first anchor record on, the seq, offset and hash of every
//     anchorIndexEvery-th record, and the last anchor value before it:
//     signedAnchor reads the records from the one at or before the
//     checkpoint's Last to that record again, checks that they are the
//     ones first read and that they chain to the head the checkpoint
//     signs, and takes the last anchor value among them, or else the one
//     before them.
//
// Only that one checkpoint is checked. If it does not verify (a forged
// checkpoint naming this key), the anchor records are taken as signed by
// none, not by an earlier checkpoint that might: the log then holds an
// older anchor, which can only make Open find it behind the counter and
// record an anchor-mismatch, never hide one.
type anchorScan struct {
	index    []anchorMark
	last     uint64 // the last anchor value read (hasLast)
	hasLast  bool
	firstSeq uint64 // of the first anchor record (len(index) > 0)
	best     Checkpoint
	hasBest  bool
}

// anchorMark is where a record is, its hash as first read, and the last
// anchor value before it (hasBefore: there is one).
type anchorMark struct {
	seq       uint64
	off       int64
	hash      Hash
	before    uint64
	hasBefore bool
}

// anchor notes an anchor record with value v at seq, offset off, hash h.
func (a *anchorScan) anchor(v, seq uint64, off int64, h Hash) {
	if len(a.index) == 0 {
		a.index = append(a.index, anchorMark{seq: seq, off: off, hash: h})
		a.firstSeq = seq
	}
	a.last, a.hasLast = v, true
}

// record notes the record at seq, offset off, hash h (every record,
// before anchor or checkpoint for it).
func (a *anchorScan) record(seq uint64, off int64, h Hash) {
	if len(a.index) == 0 {
		return
	}
	if n := len(a.index); seq-a.index[n-1].seq >= anchorIndexEvery {
		a.index = append(a.index, anchorMark{seq: seq, off: off, hash: h, before: a.last, hasBefore: a.hasLast})
	}
}

// checkpoint notes checkpoint cp of this writer's key, the record at
// seq.
func (a *anchorScan) checkpoint(seq uint64, cp Checkpoint) {
	if len(a.index) == 0 || cp.Last >= seq || cp.Last < a.firstSeq || (a.hasBest && cp.Last < a.best.Last) {
		return
	}
	a.best, a.hasBest = cp, true
}

// signedAnchor returns the last anchor value of the newest file f (name,
// its records up to offset end read and chained) that a checkpoint
// signed by this writer's key covers: ok is false when there is none
// (the value the rotation record carries stands). It reads again the
// records from the last position noted at or before the record that
// checkpoint names up to that record, for their anchor values and to
// check its head; records that read differently now (another seq or
// hash where noted, a broken chain) are an error.
func (w *Writer) signedAnchor(f *os.File, name, logID string, end int64, a *anchorScan) (uint64, bool, error) {
	if !a.hasBest {
		return 0, false, nil
	}
	cp := a.best
	at := a.index[sort.Search(len(a.index), func(i int) bool { return a.index[i].seq > cp.Last })-1]
	v, ok := at.before, at.hasBefore
	sc := &frameScanner{name: name, r: bufio.NewReaderSize(io.NewSectionReader(f, at.off, end-at.off), 64<<10), off: at.off, size: end}
	var prev Hash
	for seq := at.seq; ; seq++ {
		payload, roff, err := sc.next()
		if err != nil {
			return 0, false, fmt.Errorf("read the records checkpoint %d..%d signs again: %w", cp.First, cp.Last, err)
		}
		rec, body, h, err := DecodeRecord(payload)
		if err != nil {
			return 0, false, &Problem{File: name, Offset: roff, Err: err}
		}
		changed := func(what string) error {
			return &Problem{File: name, Offset: roff, Seq: rec.Seq, HasSeq: true, Err: fmt.Errorf("%w: read again, %s", ErrChanged, what)}
		}
		switch {
		case rec.Seq != seq:
			return 0, false, changed(fmt.Sprintf("the record here has seq %d, first read as seq %d", rec.Seq, seq))
		case seq == at.seq && h != at.hash:
			return 0, false, changed(fmt.Sprintf("the record here has hash %s, first read as %s", h, at.hash))
		case seq > at.seq && !bytes.Equal(rec.Prev, prev[:]):
			return 0, false, changed(fmt.Sprintf("the record here does not link to the record before it (prev %x, want %s)", rec.Prev, prev))
		}
		prev = h
		if e, isEvent := body.(Event); isEvent && e.Anchor != nil {
			v, ok = *e.Anchor, true
		}
		if seq < cp.Last {
			continue
		}
		if !bytes.Equal(cp.Head, h[:]) ||
			verifyDigest(w.signer.Public(), CheckpointDigest(logID, cp.First, cp.Last, cp.Head), cp.Signature) != nil {
			return 0, false, nil
		}
		return v, ok, nil
	}
}

// seqRuns is a set of seqs held as runs of consecutive ones: the records
// Open finds no checkpoint covering, in memory that grows with the
// checkpoints that break them up, not with the records.
type seqRuns []struct{ first, last uint64 }

// add adds seq, greater than every seq in the set.
func (r *seqRuns) add(seq uint64) {
	if n := len(*r); n > 0 && (*r)[n-1].last+1 == seq {
		(*r)[n-1].last = seq
		return
	}
	*r = append(*r, struct{ first, last uint64 }{seq, seq})
}

// cover removes every seq up to last.
func (r *seqRuns) cover(last uint64) {
	kept := (*r)[:0]
	for _, x := range *r {
		if x.last <= last {
			continue
		}
		x.first = max(x.first, last+1)
		kept = append(kept, x)
	}
	*r = kept
}

// count returns how many seqs the set holds.
func (r seqRuns) count() uint64 {
	var n uint64
	for _, x := range r {
		n += x.last - x.first + 1
	}
	return n
}
