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
	// Anchor is the last anchor value in the log that a verified
	// checkpoint signs (HasAnchor false: none; see Anchor), recorded at
	// seq AnchorSeq (for a partial log whose newest anchor is in a
	// removed file: the first file's rotation record, which carries it).
	// An anchor record no signature covers counts for nothing: anybody
	// who can write the disk can append one (UnsignedAnchorSeq, with
	// HasUnsignedAnchor, is the newest such record). Only when signatures
	// are not checked (Trust.ChainOnly) is the last anchor record taken
	// as it is. AnchorAlarms are the anchor-mismatch and
	// anchor-unavailable records: each a disagreement with, or a silence
	// of, the device's counter that the writer found and recorded when it
	// opened (or closed) the log (at most MaxListedRecoveries;
	// AlarmsNotListed counts the rest).
	// PrunedFiles is the number of oldest files the gate removed under
	// its retention (WithRetention), as its log-pruned record at seq
	// PrunedRecordSeq says: the log starts after them by design.
	PrunedFiles       uint64
	PrunedRecordSeq   uint64
	Anchor            uint64
	HasAnchor         bool
	AnchorSeq         uint64
	UnsignedAnchorSeq uint64
	HasUnsignedAnchor bool
	AnchorAlarms      []Recovery
	AlarmsNotListed   int
	// Restarts counts how often Verify started over because the gate's
	// retention removed the oldest file it had listed before it read it
	// (a live log; see Verify): the report is that of the last pass.
	Restarts int
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
// Verify may run on the log of a running gate. A file it listed that is
// gone when it comes to open it, with every older file gone too, is one
// the gate's retention removed meanwhile: Verify lists the directory again
// and starts over from the new oldest file, checking that start as any
// pruned start (Report.Restarts counts this). Any other file that vanishes
// is a *Problem wrapping ErrFiles that names it.
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

// maxVerifyRestarts bounds how often Verify starts again because the
// writer's retention removed the oldest file it was about to read.
const maxVerifyRestarts = 100

// verify is Verify; it fills st, when not nil, with what it held and read
// again.
//
// A live log loses its oldest files to the writer's retention while it is
// read: a file listed and gone when verify comes to open it is, when every
// file up to it is gone too (the oldest go first, and only they), a file
// retention removed; verify lists the directory again and starts over from
// the new oldest file, whose start is then checked like any pruned start
// (a signed log-pruned record must name the file before it). Any other
// file that vanishes is an error naming it.
func verify(dir string, trust Trust, st *verifyStats) (*Report, error) {
	restarts := 0
	for {
		rep, err := verifyOnce(dir, trust, st)
		var gone *fileGoneError
		if !errors.As(err, &gone) {
			if rep != nil {
				rep.Restarts = restarts
			}
			return rep, err
		}
		files, lerr := listFiles(dir)
		if lerr != nil {
			return rep, fmt.Errorf("%s vanished while verify read the log: %w", gone.file.name, lerr)
		}
		if len(files) == 0 || files[0].index <= gone.file.index {
			why := "no log file is left"
			if len(files) > 0 {
				why = fmt.Sprintf("%s, older, is still there: retention removes only the oldest files", files[0].name)
			}
			return rep, &Problem{File: gone.file.name, Offset: -1,
				Err: fmt.Errorf("%w: %s was listed, then gone when verify came to read it, and %s", ErrFiles, gone.file.name, why)}
		}
		if restarts++; restarts > maxVerifyRestarts {
			return rep, &Problem{File: gone.file.name, Offset: -1,
				Err: fmt.Errorf("%w: the log's oldest file was removed under verify %d times in a row (the last %s); try again", ErrFiles, restarts, gone.file.name)}
		}
	}
}

func verifyOnce(dir string, trust Trust, st *verifyStats) (*Report, error) {
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
	// A log may start after its first file: pruned by the gate (a
	// log-pruned record says so, checked at the end) or, with
	// Trust.AllowPartial, for any reason.
	chain := chainState{logID: trust.LogID, allowPartial: true}
	var startIdx uint64 // index of the first file present
	var startPrev []byte
	prunedSeq, explained := uint64(0), false
	cps := checkpointState{dir: dir, files: r.files}
	defer cps.close()
	if st != nil {
		defer func() { *st = cps.stats }()
	}
	lastFile := -1
	var prev, last Entry
	// Anchor values as read (seen: the rotation records must carry the
	// last one) and those not yet covered by a verified checkpoint.
	type anchorAt struct{ value, seq uint64 }
	var seen *anchorAt
	var pendingAnchors []anchorAt
	sawAnchor := func(v, seq uint64) {
		seen = &anchorAt{v, seq}
		pendingAnchors = append(pendingAnchors, anchorAt{v, seq})
	}
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
			cps.partial = e.Record.Seq != 0
			startIdx, startPrev = r.fileIndex(), rot.PrevHead
		}
		verified := false
		switch b := e.Body.(type) {
		case Rotation:
			if rep.Records > 0 && b.NextUnsigned != cps.expectFirst {
				return fail(fmt.Errorf("%w: rotation says the next checkpoint starts at seq %d, want %d", ErrCheckpoint, b.NextUnsigned, cps.expectFirst))
			}
			if rep.Records == 0 {
				if b.Anchor != nil {
					sawAnchor(*b.Anchor, e.Record.Seq)
				}
			} else if (b.Anchor != nil) != (seen != nil) || (b.Anchor != nil && *b.Anchor != seen.value) {
				var last *uint64
				if seen != nil {
					last = &seen.value
				}
				return fail(fmt.Errorf("%w: rotation carries anchor %s, but the log's last anchor is %s", ErrChain, anchorString(b.Anchor), anchorString(last)))
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
				kept := pendingAnchors[:0]
				for _, a := range pendingAnchors {
					if a.seq <= b.Last {
						rep.Anchor, rep.HasAnchor, rep.AnchorSeq = a.value, true, a.seq
					} else {
						kept = append(kept, a)
					}
				}
				pendingAnchors = kept
			}
			verified = true
		}
		if ev, ok := e.Body.(Event); ok {
			switch ev.Type {
			case EventLogRecovered:
				if len(rep.Recoveries) < MaxListedRecoveries {
					rep.Recoveries = append(rep.Recoveries, Recovery{File: e.File, Offset: e.Offset, Seq: e.Record.Seq, Reason: ev.Reason})
				} else {
					rep.RecoveriesNotListed++
				}
			case EventAnchorMismatch, EventAnchorUnavailable:
				if len(rep.AnchorAlarms) < MaxListedRecoveries {
					rep.AnchorAlarms = append(rep.AnchorAlarms, Recovery{File: e.File, Offset: e.Offset, Seq: e.Record.Seq, Reason: ev.Type + ": " + ev.Reason})
				} else {
					rep.AlarmsNotListed++
				}
			}
			if ev.Anchor != nil {
				sawAnchor(*ev.Anchor, e.Record.Seq)
			}
			if p := ev.Pruned; ev.Type == EventLogPruned && p != nil && startIdx > 0 && !explained &&
				p.File+1 == startIdx && p.LastSeq+1 == rep.FirstSeq && bytes.Equal(p.Head, startPrev) {
				explained, prunedSeq = true, e.Record.Seq
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
	if trust.ChainOnly && seen != nil {
		rep.Anchor, rep.HasAnchor, rep.AnchorSeq = seen.value, true, seen.seq
	} else if n := len(pendingAnchors); n > 0 {
		rep.UnsignedAnchorSeq, rep.HasUnsignedAnchor = pendingAnchors[n-1].seq, true
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
	if startIdx > 0 {
		// The gate's own record of removing the file before the first
		// one present explains the gap, if a signature covers it (or
		// signatures are not checked, which the report says).
		if explained && (!rep.SignaturesChecked || (rep.Signed && prunedSeq <= rep.SignedThrough)) {
			rep.PrunedFiles, rep.PrunedRecordSeq = startIdx, prunedSeq
		} else if !trust.AllowPartial {
			why := "no log-pruned record of this log names them"
			if explained {
				why = fmt.Sprintf("the log-pruned record that names them (seq %d) is not covered by a signature", prunedSeq)
			}
			return rep, &Problem{File: FileName(startIdx), Offset: int64(len(fileMagic)), Seq: rep.FirstSeq, HasSeq: true,
				Err: fmt.Errorf("%w: the log starts at %s; earlier files are missing and %s", ErrFiles, FileName(startIdx), why)}
		}
	}
	if trust.Anchor != nil {
		if err := rep.checkAnchor(*trust.Anchor); err != nil {
			p := &Problem{File: last.File, Offset: last.Offset + last.Size, Err: err}
			if rep.Records > 0 {
				p.After, p.HasAfter = rep.LastSeq, true
			}
			return rep, p
		}
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

func anchorString(a *uint64) string {
	if a == nil {
		return "none"
	}
	return fmt.Sprint(*a)
}

// checkAnchor compares the log's last anchor with the device's counter
// (see Anchor): the log may be one step ahead (a stop between the record
// and the advance, or a gate closing its log right now), never behind.
func (r *Report) checkAnchor(counter uint64) error {
	unsigned := ""
	if r.HasUnsignedAnchor {
		unsigned = fmt.Sprintf(" (an anchor record at seq %d is not covered by any signature and counts for nothing)", r.UnsignedAnchorSeq)
	}
	switch {
	case !r.HasAnchor:
		return fmt.Errorf("%w: the device's anchor counter is at %d, but this log holds no signed anchor%s: it is not the log that device anchored, or that log's anchored part was removed", ErrAnchor, counter, unsigned)
	case r.Anchor < counter:
		return fmt.Errorf("%w: the device's anchor counter is at %d, but this log was last anchored at %d (seq %d)%s: "+
			"the log was rolled back to an earlier copy, or its newest records or files were removed", ErrAnchor, counter, r.Anchor, r.AnchorSeq, unsigned)
	case r.Anchor > counter+1:
		return fmt.Errorf("%w: this log was last anchored at %d (seq %d), ahead of the device's anchor counter at %d: it comes from another gate, or the counter was replaced",
			ErrAnchor, r.Anchor, r.AnchorSeq, counter)
	}
	return nil
}
