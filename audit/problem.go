package audit

import (
	"errors"
	"fmt"
)

// More sentinel errors wrapped by a *Problem.
var (
	ErrChain      = errors.New("hash chain broken")
	ErrSeq        = errors.New("sequence broken")
	ErrSignature  = errors.New("bad checkpoint signature")
	ErrCheckpoint = errors.New("bad checkpoint")
	ErrLogID      = errors.New("log id mismatch")
	ErrFiles      = errors.New("bad file set")
	// ErrChanged: a record Verify read a second time (to check a
	// checkpoint that signs a record further back than it holds hashes
	// for) is not the record it read the first time: the log was changed
	// while it was being verified.
	ErrChanged = errors.New("log changed while it was being verified")
)

// Problem names the first bad record of a log: file, offset, seq (when it
// could be read) and what is wrong. When the record could not be read at
// all (framing, CRC, encoding), Verify sets After to the seq of the last
// good record before it, so the bad one is the record after that.
type Problem struct {
	File     string
	Offset   int64
	Seq      uint64
	HasSeq   bool
	After    uint64
	HasAfter bool
	Err      error
}

func (p *Problem) Error() string {
	where := p.File
	if p.Offset >= 0 {
		where += fmt.Sprintf(" offset %d", p.Offset)
	}
	if p.HasSeq {
		where += fmt.Sprintf(" seq %d", p.Seq)
	} else if p.HasAfter {
		where += fmt.Sprintf(" (the record after seq %d)", p.After)
	}
	return where + ": " + p.Err.Error()
}

func (p *Problem) Unwrap() error { return p.Err }
