package audit

import (
	"bytes"
	"fmt"
)

// chainState checks that records link: seq continuity, prev hash, rotation
// records only and always at the start of a file.
type chainState struct {
	logID        string
	allowPartial bool // the chain may start in a file other than index 0
	started      bool
	nextSeq      uint64
	head         Hash
}

// link checks e, read from file number fileIdx (first: it is the file's
// first record), as the next record of the chain.
func (c *chainState) link(e Entry, fileIdx uint64, first bool) error {
	rec := e.Record
	rot, isRot := e.Body.(Rotation)
	switch {
	case first && !isRot:
		return fmt.Errorf("%w: first record of the file is a %s record, want rotation", ErrChain, rec.Kind)
	case !first && isRot:
		return fmt.Errorf("%w: rotation record in the middle of a file", ErrChain)
	}
	if isRot {
		if rot.File != fileIdx {
			return fmt.Errorf("%w: rotation record names file %d but the file is %s", ErrFiles, rot.File, FileName(fileIdx))
		}
		if !bytes.Equal(rot.PrevHead, rec.Prev) {
			return fmt.Errorf("%w: rotation prev head %x differs from the record's prev %x", ErrChain, rot.PrevHead, rec.Prev)
		}
		if c.logID == "" {
			c.logID = rot.LogID
		} else if rot.LogID != c.logID {
			return fmt.Errorf("%w: file says log %q, want %q", ErrLogID, rot.LogID, c.logID)
		}
	}
	if !c.started {
		if fileIdx != 0 && !c.allowPartial {
			return fmt.Errorf("%w: the log starts at %s; earlier files are missing", ErrFiles, FileName(fileIdx))
		}
		if fileIdx == 0 {
			if rec.Seq != 0 {
				return fmt.Errorf("%w: first record of the log has seq %d, want 0", ErrSeq, rec.Seq)
			}
			if g := Genesis(c.logID); !bytes.Equal(rec.Prev, g[:]) {
				return fmt.Errorf("%w: first record does not chain to the genesis value of log %q", ErrChain, c.logID)
			}
		}
		c.started = true
	} else {
		if rec.Seq != c.nextSeq {
			return fmt.Errorf("%w: seq %d follows seq %d (want %d: a record is missing, duplicated or out of order)",
				ErrSeq, rec.Seq, c.nextSeq-1, c.nextSeq)
		}
		if !bytes.Equal(rec.Prev, c.head[:]) {
			return fmt.Errorf("%w: prev hash %x, but the previous record hashes to %x", ErrChain, rec.Prev, c.head[:])
		}
	}
	c.nextSeq = rec.Seq + 1
	c.head = e.Hash
	return nil
}
