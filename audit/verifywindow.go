package audit

// Verify's bounded memory: the window of records no checkpoint covers yet,
// and the second read of those that fell out of it.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
)

// verifyWindow is how many of the newest records no checkpoint covers yet
// Verify holds the hash and position of (56 bytes each: 224 KiB at most).
// A checkpoint signs a head a little behind it (the records appended while
// the signer worked), normally well inside the window; the records that
// fall out of it are kept as the position of the first of them only, and
// read again from disk when a checkpoint signs one of them (see
// checkpointState). A variable so that tests can shrink it.
var verifyWindow = 4096

// checkpointState follows the records no checkpoint covers yet (seq base
// to next-1), so that a checkpoint appended a little after the head it
// signs can be checked, and knows the first of them for the report. Its
// memory is bounded: the newest verifyWindow of those records are held in
// a ring (hash, position, whether it is a checkpoint); the older ones
// ("spilled", base to ringFirst()-1) only as where record base is. A
// checkpoint that signs a spilled record, and the report's first
// uncovered record when it is spilled, make it read them again from disk
// (rereader): base only moves forward, so over a whole Verify a record is
// read again at most twice (once spilled, once as the anchor below), and
// only when a checkpoint signs a head further back than the window or the
// log ends with more uncovered records than it holds. The records read again must link, each to the one before, up
// to the oldest record of the ring, whose hash must match (anchor): they
// are then, by the hash chain, the records the first pass checked, and a
// log changed between the two reads is reported as ErrChanged.
type checkpointState struct {
	// partial: the log starts after its first file (Trust.AllowPartial);
	// a checkpoint appended after a rotation may cover only records of
	// the missing file.
	partial     bool
	expectFirst uint64
	base        uint64 // seq of the first record no checkpoint covers
	next        uint64 // seq of the next record to add
	uncoveredCP uint64 // verified checkpoint records among base..next-1

	ring   pendingRing // the newest of base..next-1
	window int

	dir         string
	files       []logFile
	spillAt     pending // where record base is, while base < ringFirst() and rr is nil
	spilledCP   uint64  // verified checkpoint records among base..ringFirst()-1
	lastSpilled Hash    // hash of record ringFirst()-1
	rr          *rereader
	// unanchored: records read again have been used (a head compared,
	// checkpoints counted) but not yet linked to the ring.
	unanchored bool

	stats verifyStats
}

// rereadHook, when set (by tests), runs before Verify starts reading
// records a second time.
var rereadHook func()

// verifyStats says what a Verify held and read again (for tests).
type verifyStats struct {
	maxHeld int    // the most records whose hash was held at once
	reread  uint64 // records read a second time
}

// pending is a record no checkpoint covers yet.
type pending struct {
	hash   Hash
	offset int64
	file   int  // index in the reader's file list
	cp     bool // a verified checkpoint record
}

// recordAt is where a record is.
type recordAt struct {
	File   string
	Offset int64
	Seq    uint64
}

// pendingRing is a FIFO of at most window records, grown as needed.
type pendingRing struct {
	buf      []pending
	start, n int
}

func (q *pendingRing) at(i int) *pending { return &q.buf[(q.start+i)%len(q.buf)] }

// push appends p; when the ring already holds window records it drops the
// oldest and returns it.
func (q *pendingRing) push(p pending, window int) (pending, bool) {
	var old pending
	dropped := false
	if q.n == len(q.buf) {
		if len(q.buf) < window {
			buf := make([]pending, min(max(2*len(q.buf), 64), window))
			for i := 0; i < q.n; i++ {
				buf[i] = *q.at(i)
			}
			q.buf, q.start = buf, 0
		} else {
			old, dropped = q.pop(), true
		}
	}
	q.buf[(q.start+q.n)%len(q.buf)] = p
	q.n++
	return old, dropped
}

func (q *pendingRing) pop() pending {
	p := q.buf[q.start]
	q.start = (q.start + 1) % len(q.buf)
	q.n--
	return p
}

// ringFirst is the seq of the oldest record in the ring (next when empty).
func (c *checkpointState) ringFirst() uint64 { return c.next - uint64(c.ring.n) }

// start begins with the log's first record, seq.
func (c *checkpointState) start(seq uint64) {
	c.base, c.next = seq, seq
	c.window = max(verifyWindow, 1)
}

// add follows e, read from file number fileI of the list, as the next
// record.
func (c *checkpointState) add(e Entry, fileI int, verifiedCP bool) {
	first := c.ringFirst()
	old, dropped := c.ring.push(pending{hash: e.Hash, offset: e.Offset, file: fileI, cp: verifiedCP}, c.window)
	c.next++
	if verifiedCP {
		c.uncoveredCP++
	}
	if dropped { // record first spilled
		if c.rr == nil && first == c.base {
			c.spillAt = old
		}
		if old.cp {
			c.spilledCP++
		}
		c.lastSpilled = old.hash
	}
	c.stats.maxHeld = max(c.stats.maxHeld, len(c.ring.buf))
}

// unsigned counts the records no checkpoint covers, checkpoints aside.
func (c *checkpointState) unsigned() uint64 { return c.next - c.base - c.uncoveredCP }

func (c *checkpointState) check(cp Checkpoint, seq uint64, logID string, trust Trust, keyID string) error {
	if cp.Last >= seq {
		return fmt.Errorf("%w: checkpoint at seq %d covers up to seq %d, which is not before it", ErrCheckpoint, seq, cp.Last)
	}
	if cp.First != c.expectFirst {
		return fmt.Errorf("%w: range starts at seq %d, want %d (the seq after the previous checkpoint)", ErrCheckpoint, cp.First, c.expectFirst)
	}
	if cp.Last < c.base {
		if !c.partial {
			return fmt.Errorf("%w: covers seq %d, before the records this check holds (from %d)", ErrCheckpoint, cp.Last, c.base)
		}
		// A checkpoint appended after the rotation that covers only
		// records of the file this partial log lacks: its head cannot be
		// matched to a record here, its signature still is checked, and
		// no record held here counts as signed by it.
		if err := checkSignature(cp, logID, trust, keyID); err != nil {
			return err
		}
		c.expectFirst = cp.Last + 1
		return nil
	}
	h, err := c.cover(cp.Last)
	if err != nil {
		return err
	}
	if !bytes.Equal(cp.Head, h[:]) {
		// Before blaming the checkpoint, make sure a record read again
		// for it is the one the first pass checked.
		if err := c.settle(); err != nil {
			return err
		}
		return fmt.Errorf("%w: head %x is not the hash of record %d (%x)", ErrCheckpoint, cp.Head, cp.Last, h[:])
	}
	if err := checkSignature(cp, logID, trust, keyID); err != nil {
		return err
	}
	c.expectFirst = cp.Last + 1
	return nil
}

// cover drops records base..last (last < next), which a checkpoint
// covers, and returns the hash of record last. Spilled records are read
// again only when the checkpoint signs one of them, or after others were
// (to anchor those).
func (c *checkpointState) cover(last uint64) (Hash, error) {
	var h Hash
	for c.base <= last && c.base < c.ringFirst() {
		if c.rr == nil && last+1 >= c.ringFirst() {
			// Every spilled record is covered, and their checkpoints
			// were counted as they spilled: nothing to read.
			c.uncoveredCP -= c.spilledCP
			c.spilledCP = 0
			c.base, h = c.ringFirst(), c.lastSpilled
			break
		}
		e, err := c.reread()
		if err != nil {
			return h, err
		}
		if e.Record.Kind == KindCheckpoint {
			// Every checkpoint before next passed check.
			c.uncoveredCP--
			c.spilledCP--
		}
		h = e.Hash
		c.base++
		c.unanchored = true
	}
	if c.rr != nil && c.base == c.ringFirst() {
		if err := c.anchor(); err != nil {
			return h, err
		}
	}
	for c.base <= last {
		p := c.ring.pop()
		if p.cp {
			c.uncoveredCP--
		}
		h = p.hash
		c.base++
	}
	return h, nil
}

// reread returns the next spilled record from disk (the first call:
// record base).
func (c *checkpointState) reread() (Entry, error) {
	if c.rr == nil {
		if rereadHook != nil {
			rereadHook()
		}
		r, err := readerAt(c.dir, c.files, c.spillAt.file, c.spillAt.offset)
		if err != nil {
			return Entry{}, fmt.Errorf("%w: read %s again from offset %d (seq %d): %w",
				ErrChanged, c.files[c.spillAt.file].name, c.spillAt.offset, c.base, err)
		}
		c.rr = &rereader{r: r, seq: c.base}
	}
	c.stats.reread++
	return c.rr.next()
}

// anchor reads the spilled records left and the oldest record of the
// ring again, checks that the latter hashes as it did in the first pass,
// and closes the rereader.
func (c *checkpointState) anchor() error {
	for {
		e, err := c.reread()
		if err != nil {
			return err
		}
		if e.Record.Seq < c.ringFirst() {
			continue
		}
		c.rr.close()
		c.rr, c.unanchored = nil, false
		if want := c.ring.at(0).hash; e.Hash != want {
			return &Problem{File: e.File, Offset: e.Offset, Seq: e.Record.Seq, HasSeq: true,
				Err: fmt.Errorf("%w: read again, the record hashes to %x, but to %x when it was checked", ErrChanged, e.Hash[:], want[:])}
		}
		return nil
	}
}

// settle anchors records read again whose content has been used.
func (c *checkpointState) settle() error {
	if !c.unanchored || c.rr == nil {
		return nil
	}
	return c.anchor()
}

// finish is called after the last record. It returns where the first
// record no checkpoint covers is, checkpoints aside (false when there is
// none), and settles the records read again.
func (c *checkpointState) finish() (recordAt, bool, error) {
	var first recordAt
	found := false
	if c.base < c.ringFirst() {
		for !found && (c.rr == nil || c.rr.seq < c.ringFirst()) {
			e, err := c.reread()
			if err != nil {
				return first, false, err
			}
			if e.Record.Kind != KindCheckpoint {
				first, found = recordAt{File: e.File, Offset: e.Offset, Seq: e.Record.Seq}, true
			}
		}
		if err := c.settle(); err != nil {
			return first, false, err
		}
	}
	for i := 0; !found && i < c.ring.n; i++ {
		if p := c.ring.at(i); !p.cp {
			first, found = recordAt{File: c.files[p.file].name, Offset: p.offset, Seq: c.ringFirst() + uint64(i)}, true
		}
	}
	return first, found, nil
}

// close releases the rereader's file, if any.
func (c *checkpointState) close() {
	if c.rr != nil {
		c.rr.close()
		c.rr = nil
	}
}

// rereader reads records of the log a second time, from a record the
// first pass went through, and checks that each has the expected seq and
// links to the one before it.
type rereader struct {
	r    *Reader
	seq  uint64 // seq of the next record
	prev Hash   // hash of the record before it, once one was read
	read bool
}

func (rr *rereader) next() (Entry, error) {
	e, err := rr.r.Next()
	if err == io.EOF {
		err = fmt.Errorf("%w: the log ends before seq %d, which was read before", ErrChanged, rr.seq)
	}
	if err != nil {
		var p *Problem
		if errors.As(err, &p) {
			return Entry{}, &Problem{File: p.File, Offset: p.Offset, Seq: rr.seq, HasSeq: true,
				Err: fmt.Errorf("%w: read again: %w", ErrChanged, p.Err)}
		}
		return Entry{}, err
	}
	fail := func(why string, a ...any) (Entry, error) {
		return Entry{}, &Problem{File: e.File, Offset: e.Offset, Seq: rr.seq, HasSeq: true,
			Err: fmt.Errorf("%w: read again, %s", ErrChanged, fmt.Sprintf(why, a...))}
	}
	if e.Record.Seq != rr.seq {
		return fail("the record here has seq %d", e.Record.Seq)
	}
	if rr.read && !bytes.Equal(e.Record.Prev, rr.prev[:]) {
		return fail("the record does not link to the one before it (prev %x, want %x)", e.Record.Prev, rr.prev[:])
	}
	rr.seq++
	rr.prev, rr.read = e.Hash, true
	return e, nil
}

func (rr *rereader) close() { rr.r.Close() }
