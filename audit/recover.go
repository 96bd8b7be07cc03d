package audit

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
)

// recover reads the newest file, checks its chain, truncates a torn tail
// and makes the file current.
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
	var unsignedSeqs []uint64 // non-checkpoint records not covered by a checkpoint
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
		switch b := body.(type) {
		case Rotation:
			w.nextUnsigned = b.NextUnsigned
			unsignedSeqs = append(unsignedSeqs, rec.Seq)
		case Checkpoint:
			w.nextUnsigned = b.Last + 1
			w.lastCP = Position{File: lf.name, Offset: off, Seq: rec.Seq, Hash: h}
			kept := unsignedSeqs[:0]
			for _, s := range unsignedSeqs {
				if s > b.Last {
					kept = append(kept, s)
				}
			}
			unsignedSeqs = kept
		default:
			unsignedSeqs = append(unsignedSeqs, rec.Seq)
		}
		first = false
		end = sc.off
	}
	if first {
		// createDurable makes a file visible only with its rotation
		// record, so an empty newest file is damage, not a torn write.
		return corrupt(&Problem{File: lf.name, Offset: int64(len(fileMagic)), Err: fmt.Errorf("%w: no complete rotation record", ErrTruncated)})
	}
	if w.cfg.logID != "" && w.cfg.logID != chain.logID {
		return fmt.Errorf("open audit log %s: %w: the log is %q, want %q", w.dir, ErrLogID, chain.logID, w.cfg.logID)
	}
	if torn != nil {
		if err := w.cutTornTail(f, path, torn); err != nil {
			return err
		}
		w.recovered = torn
	}
	w.logID = chain.logID
	w.f, w.fileIdx, w.fileName, w.fileSize = f, lf.index, lf.name, end
	w.nextSeq, w.head = chain.nextSeq, chain.head
	w.nonCP, w.nonCPSigned = uint64(len(unsignedSeqs)), 0
	ok = true
	return nil
}

// cutTornTail keeps the torn bytes in a side file, then truncates.
func (w *Writer) cutTornTail(f *os.File, path string, t *TornTail) error {
	b := make([]byte, t.Size)
	if _, err := f.ReadAt(b, t.Offset); err != nil {
		return fmt.Errorf("recover audit log: read torn tail of %s: %w", path, err)
	}
	side := filepath.Base(path) + ".torn-" + strconv.FormatInt(w.cfg.now().UnixNano(), 10)
	sf, err := createDurable(w.dir, side, b)
	if err != nil {
		return fmt.Errorf("recover audit log: keep torn tail: %w", err)
	}
	sf.Close()
	if err := f.Truncate(t.Offset); err != nil {
		return fmt.Errorf("recover audit log: truncate %s to %d: %w", path, t.Offset, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("recover audit log: fsync %s: %w", path, err)
	}
	return nil
}
