package audit

import (
	"bytes"
	"errors"
	"fmt"
	"io"
)

// Report summarises a verified log.
type Report struct {
	LogID             string
	Files             int
	Records           uint64
	Bytes             int64
	FirstSeq, LastSeq uint64
	Head              Hash
	Checkpoints       int
	// SignaturesChecked is false for a chain-only check.
	SignaturesChecked bool
	// Signed: some checkpoint verified; SignedThrough is the highest seq
	// it covers.
	Signed        bool
	SignedThrough uint64
	// Unsigned counts records after SignedThrough other than verified
	// checkpoints: the chain links them but no signature covers them, so
	// they are unverified (anybody with write access could have written
	// them). UnsignedFrom is the seq of the first of them.
	Unsigned     uint64
	UnsignedFrom uint64
	// Torn is the torn tail of the newest file, if any (an error only
	// with Trust.RequireSealed).
	Torn *TornTail
	// End says how the newest file ends. EndFile and EndOffset say where:
	// for EndSealed, the log-closed record; for EndTorn, the torn bytes;
	// for EndUnsealed, the first record no signature covers (when
	// signatures are checked and Unsigned > 0), else the end of the last
	// record, where the seal is missing.
	End       EndState
	EndFile   string
	EndOffset int64
	// Recoveries are the log-recovered records in the log: each is an
	// unclean shutdown (and what it truncated) that the writer found and
	// recorded when it reopened the log.
	Recoveries []Recovery
	// RecoveriesNotListed counts the log-recovered records after the
	// first MaxListedRecoveries, which Recoveries does not list (a real
	// gate has one per unclean restart; a forged log could hold any
	// number, and Verify's memory stays bounded).
	RecoveriesNotListed int
	// DevRecords counts the records marked as written in dev mode
	// (Record.Dev, WithDevMode): the gate had no TPM and signed its
	// checkpoints with a software key. DevFirst and DevLast are the seqs
	// of the first and last of them. A log with some marked records and
	// some not is mixed (Report.DevMixed).
	DevRecords        uint64
	DevFirst, DevLast uint64
}

// DevMixed reports whether the log holds both dev-mode records and
// records not marked so.
func (r *Report) DevMixed() bool { return r.DevRecords > 0 && r.DevRecords < r.Records }

// DevSummary describes the dev-mode records in one line, or returns ""
// when there are none.
func (r *Report) DevSummary() string {
	if r.DevRecords == 0 {
		return ""
	}
	s := fmt.Sprintf("DEV MODE: %d records signed with a software key (not a TPM)", r.DevRecords)
	if r.DevMixed() {
		s += fmt.Sprintf("; MIXED log: dev-mode records (seq %d to %d) and %d records not marked dev (written with a TPM key)",
			r.DevFirst, r.DevLast, r.Records-r.DevRecords)
	}
	return s
}

// Recovery is a log-recovered record.
type Recovery struct {
	File   string
	Offset int64
	Seq    uint64
	Reason string
}

// EndState says how the newest file of a log ends.
type EndState uint8

const (
	// EndSealed: the newest file ends with the log-closed record Close
	// appends and the checkpoint right after it that signs it (signature
	// checked unless Trust.ChainOnly): the writer closed the log here.
	EndSealed EndState = iota + 1
	// EndUnsealed: the newest file ends after a complete record without
	// that seal: the gate is still running, or it stopped without Close
	// (crash, power cut, kill), or the file was cut at a record boundary.
	// Records after the last checkpoint (Report.Unsigned) are unverified.
	EndUnsealed
	// EndTorn: the newest file ends in bytes cut mid-record
	// (Report.Torn): a write interrupted by a crash or power cut, or a
	// file truncated mid-record.
	EndTorn
)

func (s EndState) String() string {
	switch s {
	case EndSealed:
		return "sealed"
	case EndUnsealed:
		return "unsealed"
	case EndTorn:
		return "torn"
	}
	return fmt.Sprintf("end(%d)", uint8(s))
}

// ErrNotSealed is wrapped by the *Problem Verify returns with
// Trust.RequireSealed for a log whose newest file does not end sealed.
var ErrNotSealed = errors.New("log not sealed")

// EndSummary describes in one line how the newest file ends and what that
// means.
func (r *Report) EndSummary() string {
	const causes = "the gate is running, or it stopped without closing the log (crash, power cut), or the file was truncated or newer files removed"
	switch r.End {
	case EndSealed:
		s := fmt.Sprintf("sealed: the log ends with the log-closed record at %s offset %d and the checkpoint signing it (a clean close)", r.EndFile, r.EndOffset)
		if !r.SignaturesChecked {
			s += "; signature NOT checked (chain-only)"
		}
		return s
	case EndTorn:
		return fmt.Sprintf("NOT sealed, torn tail: %s ends in %d bytes cut mid-record at offset %d (%s) after seq %d: a write interrupted by a crash or power cut, or a file truncated mid-record",
			r.EndFile, r.Torn.Size, r.EndOffset, r.Torn.Reason, r.LastSeq)
	case EndUnsealed:
		if r.SignaturesChecked && r.Unsigned > 0 {
			return fmt.Sprintf("NOT sealed: %d records from seq %d (%s offset %d) to seq %d are covered by no checkpoint signature (unverified), and no log-closed record ends the log: %s",
				r.Unsigned, r.UnsignedFrom, r.EndFile, r.EndOffset, r.LastSeq, causes)
		}
		return fmt.Sprintf("NOT sealed: the log ends at %s offset %d after seq %d without a log-closed record: %s", r.EndFile, r.EndOffset, r.LastSeq, causes)
	}
	return "no end determined"
}

// Verify checks every file of the log in dir in order: magic, framing,
// CRC, encoding, seq continuity, the hash chain across files, and every
// checkpoint (range, head, key id and signature against trust). It returns
// the report so far and, for the first bad record, a *Problem naming file,
// offset, seq and what is wrong. A torn tail at the end of the newest file
// is reported in Report.Torn, not as an error; the same in an older file is
// ErrTruncated.
//
// The report says how the newest file ends (Report.End): sealed by Close,
// unsealed (records after the last checkpoint are counted in Unsigned,
// unverified), or torn. With Trust.RequireSealed anything but a sealed end
// is a *Problem wrapping ErrNotSealed, naming the file and offset.
//
// Verify streams: its memory does not grow with the log, nor with the
// longest stretch of records no checkpoint covers (a signer down for long,
// a forged log without checkpoints). It holds the hashes of at most the
// 4,096 newest uncovered records (about 224 KiB) and the position of the
// first of the older ones, and reads those again from disk only when a
// checkpoint signs one of them or to name where the uncovered records
// start; a record read again that differs from its first read is a
// *Problem wrapping ErrChanged. Add two read buffers of 256 KiB and up to
// two record buffers of MaxRecordSize, and the Report's Recoveries (one a
// log-recovered record, at most MaxListedRecoveries).
func Verify(dir string, trust Trust) (*Report, error) {
	return verify(dir, trust, nil)
}

// verify is Verify; it fills st, when not nil, with what it held and read
// again.
func verify(dir string, trust Trust, st *verifyStats) (*Report, error) {
	if trust.PublicKey == nil && !trust.ChainOnly {
		return nil, errNoTrust
	}
	rep := &Report{SignaturesChecked: !trust.ChainOnly}
	var keyID string
	if trust.PublicKey != nil {
		var err error
		if keyID, err = KeyID(trust.PublicKey); err != nil {
			return nil, err
		}
	}
	r, err := NewReader(dir)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	rep.Files = len(r.files)
	for i := 1; i < len(r.files); i++ {
		if r.files[i].index != r.files[i-1].index+1 {
			return rep, &Problem{File: FileName(r.files[i-1].index + 1), Offset: -1,
				Err: fmt.Errorf("%w: file missing between %s and %s", ErrFiles, r.files[i-1].name, r.files[i].name)}
		}
	}
	chain := chainState{logID: trust.LogID, allowPartial: trust.AllowPartial}
	cps := checkpointState{dir: dir, files: r.files}
	defer cps.close()
	if st != nil {
		defer func() { *st = cps.stats }()
	}
	lastFile := -1
	var prev, last Entry
	for {
		e, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			var p *Problem
			if errors.As(err, &p) && !p.HasSeq && rep.Records > 0 {
				p.After, p.HasAfter = rep.LastSeq, true
			}
			return rep, err
		}
		first := r.i != lastFile
		lastFile = r.i
		fail := func(err error) (*Report, error) {
			return rep, &Problem{File: e.File, Offset: e.Offset, Seq: e.Record.Seq, HasSeq: true, Err: err}
		}
		if err := chain.link(e, r.fileIndex(), first); err != nil {
			return fail(err)
		}
		if rep.Records == 0 {
			rep.FirstSeq = e.Record.Seq
			rep.LogID = chain.logID
			rot := e.Body.(Rotation)
			cps.expectFirst = rot.NextUnsigned
			cps.start(e.Record.Seq)
			cps.partial = trust.AllowPartial && e.Record.Seq != 0
		}
		verified := false
		switch b := e.Body.(type) {
		case Rotation:
			if rep.Records > 0 && b.NextUnsigned != cps.expectFirst {
				return fail(fmt.Errorf("%w: rotation says the next checkpoint starts at seq %d, want %d", ErrCheckpoint, b.NextUnsigned, cps.expectFirst))
			}
		case Checkpoint:
			if err := cps.check(b, e.Record.Seq, chain.logID, trust, keyID); err != nil {
				var p *Problem
				if errors.As(err, &p) {
					return rep, p // a record read again has changed: named by its own place
				}
				return fail(err)
			}
			rep.Checkpoints++
			if !trust.ChainOnly {
				rep.Signed, rep.SignedThrough = true, b.Last
			}
			verified = true
		}
		if ev, ok := e.Body.(Event); ok && ev.Type == EventLogRecovered {
			if len(rep.Recoveries) < MaxListedRecoveries {
				rep.Recoveries = append(rep.Recoveries, Recovery{File: e.File, Offset: e.Offset, Seq: e.Record.Seq, Reason: ev.Reason})
			} else {
				rep.RecoveriesNotListed++
			}
		}
		if e.Record.Dev {
			if rep.DevRecords == 0 {
				rep.DevFirst = e.Record.Seq
			}
			rep.DevRecords++
			rep.DevLast = e.Record.Seq
		}
		cps.add(e, r.i, verified)
		prev, last = last, e
		rep.Records++
		rep.Bytes += e.Size
		rep.LastSeq = e.Record.Seq
		rep.Head = e.Hash
	}
	rep.Torn = r.Torn()
	firstUnsigned, hasUnsigned, err := cps.finish()
	if err != nil {
		return rep, err
	}
	rep.Unsigned = cps.unsigned()
	if hasUnsigned {
		rep.UnsignedFrom = firstUnsigned.Seq
	}
	if !rep.Signed {
		rep.Unsigned = rep.Records
		rep.UnsignedFrom = rep.FirstSeq
	}
	newest := r.files[len(r.files)-1].name
	if last.File != newest {
		// A file becomes visible only with its rotation record in place
		// (written, fsynced, then renamed), so a newest file without one
		// is damage or tampering, not a torn write; Open refuses it too.
		p := &Problem{File: newest, Offset: int64(len(fileMagic)),
			Err: fmt.Errorf("%w: no complete rotation record (a log file is only ever created with one: not a torn write)", ErrTruncated)}
		if rep.Records > 0 {
			p.After, p.HasAfter = rep.LastSeq, true
		}
		return rep, p
	}
	switch first := firstUnsigned; {
	case rep.Torn != nil:
		rep.End, rep.EndFile, rep.EndOffset = EndTorn, rep.Torn.File, rep.Torn.Offset
	case sealed(prev, last):
		rep.End, rep.EndFile, rep.EndOffset = EndSealed, prev.File, prev.Offset
	case rep.SignaturesChecked && rep.Unsigned > 0:
		rep.End, rep.EndFile, rep.EndOffset = EndUnsealed, first.File, first.Offset
	default:
		rep.End, rep.EndFile, rep.EndOffset = EndUnsealed, last.File, last.Offset+last.Size
	}
	if trust.RequireSealed && rep.End != EndSealed {
		p := &Problem{File: rep.EndFile, Offset: rep.EndOffset, Err: fmt.Errorf("%w: %s", ErrNotSealed, rep.EndSummary())}
		if rep.End == EndUnsealed && rep.SignaturesChecked && rep.Unsigned > 0 {
			p.Seq, p.HasSeq = rep.UnsignedFrom, true
		} else if rep.Records > 0 {
			p.After, p.HasAfter = rep.LastSeq, true
		}
		return rep, p
	}
	return rep, nil
}

// MaxListedRecoveries bounds Report.Recoveries; further log-recovered
// records are counted in Report.RecoveriesNotListed. A variable for tests.
var MaxListedRecoveries = 1000

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

// checkSignature checks a checkpoint's key and signature (nothing with
// Trust.ChainOnly).
func checkSignature(cp Checkpoint, logID string, trust Trust, keyID string) error {
	if trust.ChainOnly {
		return nil
	}
	if cp.KeyID != keyID {
		return fmt.Errorf("%w: signed by key %s, trusted key is %s", ErrSignature, cp.KeyID, keyID)
	}
	if err := verifyDigest(trust.PublicKey, CheckpointDigest(logID, cp.First, cp.Last, cp.Head), cp.Signature); err != nil {
		if errors.Is(err, ErrSignature) {
			return fmt.Errorf("%w: checkpoint %d..%d does not verify against key %s", ErrSignature, cp.First, cp.Last, keyID)
		}
		return err
	}
	return nil
}
