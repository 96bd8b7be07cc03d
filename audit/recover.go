package audit

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
)

// recover reads the newest file, checks its chain, truncates a torn tail
// and makes the file current. Unless the file ended sealed (see sealed) it
// sets w.recovery, the reason of the log-recovered record Open appends.
func (w *Writer) recover(lf logFile) error {
	path := filepath.Join(w.dir, lf.name)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("open audit log: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
		}
	}()
	corrupt := func(err error) error {
		return fmt.Errorf("open audit log %s: %w (nothing was changed; run `otgate audit verify` and move the damaged file aside)", w.dir, err)
	}
	sc, err := newFrameScanner(f, lf.name)
	if err != nil {
		return corrupt(err)
	}
	chain := chainState{allowPartial: true}
	first := true
	var end int64
	var torn *TornTail
	var unsigned seqRuns // non-checkpoint records not covered by a checkpoint
	var prev, last Entry // the last two records
	// The anchor the log holds is the last one a checkpoint this signer
	// signed covers (as Verify counts it): an unsigned log-anchored record
	// at the end is anybody's who can write the disk, and one taken at
	// face value here would hide a rolled-back copy, and then be signed
	// by this run's next checkpoint. anchors collects what that needs
	// while the file is read (see anchorScan), without holding the hash
	// of every record.
	var anchors anchorScan
	for {
		payload, off, err := sc.next()
		if err == io.EOF {
			break
		}
		var t *errTorn
		if errors.As(err, &t) {
			torn = &t.tail
			break
		}
		if err != nil {
			return corrupt(err)
		}
		rec, body, h, err := DecodeRecord(payload)
		if err != nil {
			return corrupt(&Problem{File: lf.name, Offset: off, Err: err})
		}
		e := Entry{File: lf.name, Offset: off, Record: rec, Body: body, Hash: h}
		if err := chain.link(e, lf.index, first); err != nil {
			return corrupt(&Problem{File: lf.name, Offset: off, Seq: rec.Seq, HasSeq: true, Err: err})
		}
		anchors.record(rec.Seq, off, h)
		switch b := body.(type) {
		case Rotation:
			// The value the previous file ended with (Verify checks it
			// against that file).
			w.anchor = b.Anchor
			w.nextUnsigned = b.NextUnsigned
			unsigned.add(rec.Seq)
		case Checkpoint:
			if b.KeyID == w.keyID {
				anchors.checkpoint(rec.Seq, b)
			}
			w.nextUnsigned = b.Last + 1
			w.lastCP = Position{File: lf.name, Offset: off, Seq: rec.Seq, Hash: h}
			unsigned.cover(b.Last)
		case Event:
			if b.Anchor != nil {
				anchors.anchor(*b.Anchor, rec.Seq, off, h)
			}
			unsigned.add(rec.Seq)
		default:
			unsigned.add(rec.Seq)
		}
		first = false
		end = sc.off
		prev, last = last, e
	}
	if first {
		// createDurable makes a file visible only with its rotation
		// record, so an empty newest file is damage, not a torn write.
		return corrupt(&Problem{File: lf.name, Offset: int64(len(fileMagic)), Err: fmt.Errorf("%w: no complete rotation record", ErrTruncated)})
	}
	if w.cfg.logID != "" && w.cfg.logID != chain.logID {
		return fmt.Errorf("open audit log %s: %w: the log is %q, want %q", w.dir, ErrLogID, chain.logID, w.cfg.logID)
	}
	switch {
	case torn != nil:
		side, err := w.cutTornTail(f, path, torn)
		if err != nil {
			return err
		}
		w.recovered = torn
		w.recovery = fmt.Sprintf("recovered after unclean shutdown: truncated %d bytes at offset %d of %s (%s; kept in %s); the log ended at seq %d",
			torn.Size, torn.Offset, lf.name, torn.Reason, side, last.Record.Seq)
	case sealed(prev, last):
		w.sealedEnd = true
	default:
		w.recovery = fmt.Sprintf("recovered after unclean shutdown: the log ended at seq %d (%s offset %d) without a log-closed record; nothing truncated",
			last.Record.Seq, lf.name, end)
	}
	if v, ok, err := w.signedAnchor(f, lf.name, chain.logID, end, &anchors); err != nil {
		return corrupt(err)
	} else if ok {
		w.anchor = &v
	}
	w.logID = chain.logID
	w.f, w.fileIdx, w.fileName, w.fileSize = f, lf.index, lf.name, end
	w.nextSeq, w.head = chain.nextSeq, chain.head
	w.nonCP, w.nonCPSigned = unsigned.count(), 0
	ok = true
	return nil
}

// sealed reports whether last is the checkpoint Close appends right after
// its log-closed record prev, signing it (the signature itself is checked
// by Verify, not here).
func sealed(prev, last Entry) bool {
	cp, ok := last.Body.(Checkpoint)
	if !ok || prev.Body == nil || cp.Last != prev.Record.Seq || !bytes.Equal(cp.Head, prev.Hash[:]) {
		return false
	}
	ev, ok := prev.Body.(Event)
	return ok && ev.Type == EventLogClosed
}

// cutTornTail keeps the torn bytes in a side file, then truncates. It
// returns the side file's name.
func (w *Writer) cutTornTail(f *os.File, path string, t *TornTail) (string, error) {
	b := make([]byte, t.Size)
	if _, err := f.ReadAt(b, t.Offset); err != nil {
		return "", fmt.Errorf("recover audit log: read torn tail of %s: %w", path, err)
	}
	side := filepath.Base(path) + ".torn-" + strconv.FormatInt(w.cfg.now().UnixNano(), 10)
	sf, err := createDurable(w.dir, side, b)
	if err != nil {
		return "", fmt.Errorf("recover audit log: keep torn tail: %w", err)
	}
	sf.Close()
	if err := f.Truncate(t.Offset); err != nil {
		return "", fmt.Errorf("recover audit log: truncate %s to %d: %w", path, t.Offset, err)
	}
	if err := f.Sync(); err != nil {
		return "", fmt.Errorf("recover audit log: fsync %s: %w", path, err)
	}
	return side, nil
}
