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
	// checkpoints: the chain links them but no signature covers them yet.
	Unsigned uint64
	// Torn is the torn tail of the newest file, if any (not an error).
	Torn *TornTail
}

// Verify checks every file of the log in dir in order: magic, framing,
// CRC, encoding, seq continuity, the hash chain across files, and every
// checkpoint (range, head, key id and signature against trust). It returns
// the report so far and, for the first bad record, a *Problem naming file,
// offset, seq and what is wrong. A torn tail at the end of the newest file
// is reported in Report.Torn, not as an error; the same in an older file is
// ErrTruncated.
func Verify(dir string, trust Trust) (*Report, error) {
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
	cps := checkpointState{}
	lastFile := -1
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
			cps.base = e.Record.Seq
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
				return fail(err)
			}
			rep.Checkpoints++
			if !trust.ChainOnly {
				rep.Signed, rep.SignedThrough = true, b.Last
			}
			verified = true
		}
		cps.add(e.Hash, verified)
		rep.Records++
		rep.Bytes += e.Size
		rep.LastSeq = e.Record.Seq
		rep.Head = e.Hash
	}
	rep.Torn = r.Torn()
	rep.Unsigned = cps.unsigned
	if !rep.Signed {
		rep.Unsigned = rep.Records
	}
	return rep, nil
}

// checkpointState keeps the hashes of records not yet covered by a
// checkpoint, so a checkpoint appended a little after the head it signs
// can be checked.
type checkpointState struct {
	// partial: the log starts after its first file (Trust.AllowPartial);
	// a checkpoint appended after a rotation may cover only records of
	// the missing file.
	partial     bool
	expectFirst uint64
	base        uint64 // seq of hashes[0]
	hashes      []Hash
	unsigned    uint64 // non-checkpoint records in hashes
	isCP        []bool
}

func (c *checkpointState) add(h Hash, verifiedCP bool) {
	c.hashes = append(c.hashes, h)
	c.isCP = append(c.isCP, verifiedCP)
	if !verifiedCP {
		c.unsigned++
	}
}

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
	idx := cp.Last - c.base
	if h := c.hashes[idx]; !bytes.Equal(cp.Head, h[:]) {
		return fmt.Errorf("%w: head %x is not the hash of record %d (%x)", ErrCheckpoint, cp.Head, cp.Last, h[:])
	}
	if err := checkSignature(cp, logID, trust, keyID); err != nil {
		return err
	}
	c.expectFirst = cp.Last + 1
	// Drop what the checkpoint covers.
	for _, isCP := range c.isCP[:idx+1] {
		if !isCP {
			c.unsigned--
		}
	}
	c.hashes = append([]Hash(nil), c.hashes[idx+1:]...)
	c.isCP = append([]bool(nil), c.isCP[idx+1:]...)
	c.base = cp.Last + 1
	return nil
}

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
