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
// signedAnchor), in memory that grows with the anchor records and one
// position per anchorIndexEvery records, not with the records:
//
//   - the anchor records (log-anchored and log-closed events with a
//     value), in file order;
//   - the checkpoint of this key, read after the first anchor record,
//     that signs furthest (the highest Last below its own seq): every
//     record up to its Last is covered by it, the anchor records among
//     them included, so it alone decides the answer;
//   - from the first anchor record on, the seq and offset of every
//     anchorIndexEvery-th record, to read the record that checkpoint
//     names again and check its head.
//
// Only that one checkpoint is checked. If it does not verify (a forged
// checkpoint naming this key), the anchor records are taken as signed by
// none, not by an earlier checkpoint that might: the log then holds an
// older anchor, which can only make Open find it behind the counter and
// record an anchor-mismatch, never hide one.
type anchorScan struct {
	anchors []anchorAt
	index   []anchorAt // {seq, offset}: value holds the offset
	best    Checkpoint
	hasBest bool
}

type anchorAt struct{ value, seq uint64 }

// anchor notes an anchor record with value v at seq, offset off.
func (a *anchorScan) anchor(v, seq uint64, off int64) {
	if len(a.anchors) == 0 {
		a.index = append(a.index, anchorAt{value: uint64(off), seq: seq})
	}
	a.anchors = append(a.anchors, anchorAt{v, seq})
}

// record notes the record at seq, offset off (every record, before
// anchor or checkpoint for it).
func (a *anchorScan) record(seq uint64, off int64) {
	if len(a.anchors) == 0 {
		return
	}
	if n := len(a.index); seq-a.index[n-1].seq >= anchorIndexEvery {
		a.index = append(a.index, anchorAt{value: uint64(off), seq: seq})
	}
}

// checkpoint notes checkpoint cp of this writer's key, the record at
// seq.
func (a *anchorScan) checkpoint(seq uint64, cp Checkpoint) {
	if len(a.anchors) == 0 || cp.Last >= seq || cp.Last < a.anchors[0].seq || (a.hasBest && cp.Last < a.best.Last) {
		return
	}
	a.best, a.hasBest = cp, true
}

// signedAnchor returns the last anchor value of the newest file f (name,
// its records up to offset end read and chained) that a checkpoint
// signed by this writer's key covers: ok is false when there is none
// (the value the rotation record carries stands). It reads again the
// record that checkpoint names to check its head; a record that reads
// differently now is an error.
func (w *Writer) signedAnchor(f *os.File, name, logID string, end int64, a *anchorScan) (uint64, bool, error) {
	if !a.hasBest {
		return 0, false, nil
	}
	cp := a.best
	at := a.index[sort.Search(len(a.index), func(i int) bool { return a.index[i].seq > cp.Last })-1]
	off := int64(at.value)
	sc := &frameScanner{name: name, r: bufio.NewReaderSize(io.NewSectionReader(f, off, end-off), 64<<10), off: off, size: end}
	for seq := at.seq; ; seq++ {
		payload, roff, err := sc.next()
		if err != nil {
			return 0, false, fmt.Errorf("read the record checkpoint %d..%d signs again: %w", cp.First, cp.Last, err)
		}
		rec, _, h, err := DecodeRecord(payload)
		if err != nil {
			return 0, false, &Problem{File: name, Offset: roff, Err: err}
		}
		if rec.Seq != seq {
			return 0, false, &Problem{File: name, Offset: roff, Seq: rec.Seq, HasSeq: true,
				Err: fmt.Errorf("%w: read again, the record here has seq %d, first read as seq %d", ErrChanged, rec.Seq, seq)}
		}
		if seq < cp.Last {
			continue
		}
		if !bytes.Equal(cp.Head, h[:]) ||
			verifyDigest(w.signer.Public(), CheckpointDigest(logID, cp.First, cp.Last, cp.Head), cp.Signature) != nil {
			return 0, false, nil
		}
		break
	}
	var v uint64
	ok := false
	for _, x := range a.anchors {
		if x.seq > cp.Last {
			break
		}
		v, ok = x.value, true
	}
	return v, ok, nil
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
