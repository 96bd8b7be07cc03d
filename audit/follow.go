package audit

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
)

// Follower reads a log that a Writer (possibly another process) is still
// appending to, record by record, across rotations. It checks framing,
// encoding and the chain of what it reads; an incomplete record at the end
// of the newest file is "not yet", not an error. A file the writer's
// retention removes under it (it and every older file gone) is left for
// the oldest file left; the chain goes on there, after a jump in seq if
// records were removed before the follower read them.
type Follower struct {
	dir      string
	after    uint64
	hasAfter bool
	started  bool
	fileIdx  uint64
	off      int64
	chain    chainState
	first    bool // the next record is the first of its file
	expect   []byte
	// crossed: the follower moved on from a file the retention removed
	// under it (see read); the chain may go on after a gap once.
	crossed bool
}

// ExpectHash makes the follower check that the record at seq after (the
// resume point) has hash h, so a cursor cannot silently resume in a log
// that was replaced or rewritten.
func (f *Follower) ExpectHash(h []byte) { f.expect = append([]byte(nil), h...) }

// NewFollower follows the log in dir from its first record, or, when
// hasAfter, from the record after seq after.
func NewFollower(dir string, after uint64, hasAfter bool) *Follower {
	return &Follower{dir: dir, after: after, hasAfter: hasAfter, chain: chainState{allowPartial: true}}
}

// LogID returns the id of the followed log once a record was read.
func (f *Follower) LogID() string { return f.chain.logID }

// TryNext returns the next record if one is complete on disk; ok is false
// when the reader is at the current end of the log.
func (f *Follower) TryNext() (e Entry, ok bool, err error) {
	for {
		e, ok, err = f.read()
		if err != nil || !ok {
			return e, ok, err
		}
		if f.hasAfter && e.Record.Seq <= f.after {
			if e.Record.Seq == f.after && f.expect != nil && !bytes.Equal(f.expect, e.Hash[:]) {
				return Entry{}, false, &Problem{File: e.File, Offset: e.Offset, Seq: e.Record.Seq, HasSeq: true,
					Err: fmt.Errorf("%w: resume point has hash %s, the cursor expects %x", ErrChain, e.Hash, f.expect)}
			}
			continue
		}
		return e, true, nil
	}
}

func (f *Follower) start() (bool, error) {
	files, err := listFiles(f.dir)
	if err != nil {
		return false, err
	}
	if len(files) == 0 {
		return false, nil
	}
	pick := files[0]
	if f.hasAfter {
		// The newest file whose first record is at or before after+1.
		for i := len(files) - 1; i >= 0; i-- {
			seq, err := firstSeq(filepath.Join(f.dir, files[i].name), files[i].name)
			if err != nil {
				return false, err
			}
			if seq <= f.after+1 {
				pick = files[i]
				break
			}
		}
	}
	f.fileIdx, f.off, f.first, f.started = pick.index, int64(len(fileMagic)), true, true
	return true, nil
}

func firstSeq(path, name string) (uint64, error) {
	file, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("open audit log file: %w", err)
	}
	defer file.Close()
	sc, err := newFrameScanner(file, name)
	if err != nil {
		return 0, err
	}
	p, off, err := sc.next()
	if err != nil {
		return 0, fmt.Errorf("first record of %s: %w", name, err)
	}
	rec, _, _, err := DecodeRecord(p)
	if err != nil {
		return 0, &Problem{File: name, Offset: off, Err: err}
	}
	return rec.Seq, nil
}

func (f *Follower) read() (Entry, bool, error) {
	if !f.started {
		if ok, err := f.start(); !ok || err != nil {
			return Entry{}, false, err
		}
	}
	for {
		name := FileName(f.fileIdx)
		e, ok, err := f.readAt(name)
		if f.removed(err) {
			continue
		}
		if err != nil || ok {
			return e, ok, err
		}
		// At the end of this file: move on only if a newer file exists,
		// and only after checking this one did not grow meanwhile (the
		// writer never appends to a file once the next one exists).
		if _, err := os.Stat(filepath.Join(f.dir, FileName(f.fileIdx+1))); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return Entry{}, false, nil
			}
			return Entry{}, false, fmt.Errorf("follow audit log: %w", err)
		}
		if e, ok, err := f.readAt(name); f.removed(err) {
			continue
		} else if err != nil || ok {
			return e, ok, err
		}
		f.fileIdx++
		f.off = int64(len(fileMagic))
		f.first = true
	}
}

// removed reports whether err says the file being followed is gone
// because the log's retention removed it (it and every older file are
// gone: the oldest go first), and then moves to the start of the oldest
// file left. The records of the removed file the follower had not read
// yet are lost to it: the next record's seq says how many (the chain goes
// on from there, see crossed).
func (f *Follower) removed(err error) bool {
	if !errors.Is(err, os.ErrNotExist) {
		return false
	}
	files, lerr := listFiles(f.dir)
	if lerr != nil || len(files) == 0 || files[0].index <= f.fileIdx {
		return false
	}
	f.fileIdx, f.off, f.first, f.crossed = files[0].index, int64(len(fileMagic)), true, true
	return true
}

// readAt reads the record at f.off in file name if it is complete.
func (f *Follower) readAt(name string) (Entry, bool, error) {
	file, err := os.Open(filepath.Join(f.dir, name))
	if err != nil {
		return Entry{}, false, fmt.Errorf("follow audit log: %w", err)
	}
	defer file.Close()
	var h [frameHeaderSize]byte
	if _, err := file.ReadAt(h[:], f.off); err != nil {
		if err == io.EOF {
			return Entry{}, false, nil
		}
		return Entry{}, false, fmt.Errorf("follow audit log: read %s: %w", name, err)
	}
	n := int64(binary.BigEndian.Uint32(h[:4]))
	if n == 0 || n > MaxRecordSize {
		return Entry{}, false, &Problem{File: name, Offset: f.off, Err: fmt.Errorf("%w: record length %d", ErrFraming, n)}
	}
	p := make([]byte, n)
	if got, err := file.ReadAt(p, f.off+frameHeaderSize); err != nil {
		if err == io.EOF {
			if m, ok := damagedLength(h, p[:got]); ok {
				// Not a record being written: one complete record
				// follows a length field that says otherwise.
				return Entry{}, false, &Problem{File: name, Offset: f.off, Err: fmt.Errorf("%w: record length %d runs past the end of the file, but a complete record of %d bytes with a matching CRC follows the header (a damaged length field)", ErrFraming, n, m)}
			}
			return Entry{}, false, nil // still being written
		}
		return Entry{}, false, fmt.Errorf("follow audit log: read %s: %w", name, err)
	}
	t := castagnoli()
	c := crc32.Update(crc32.Update(0, t, h[:4]), t, p)
	if c != binary.BigEndian.Uint32(h[4:]) {
		st, err := file.Stat()
		if err == nil && st.Size() == f.off+frameHeaderSize+n {
			return Entry{}, false, nil // possibly a write in progress: retry later
		}
		return Entry{}, false, &Problem{File: name, Offset: f.off, Err: fmt.Errorf("%w: record of %d bytes", ErrCRC, n)}
	}
	rec, body, hash, err := DecodeRecord(p)
	if err != nil {
		return Entry{}, false, &Problem{File: name, Offset: f.off, Err: err}
	}
	e := Entry{File: name, Offset: f.off, Size: frameHeaderSize + n, Record: rec, Body: body, Hash: hash}
	if f.crossed && f.first && rec.Seq > f.chain.nextSeq {
		// After records the retention removed before this follower read
		// them: the chain starts again here, of the same log.
		f.chain = chainState{logID: f.chain.logID, allowPartial: true}
	}
	f.crossed = false
	if err := f.chain.link(e, f.fileIdx, f.first); err != nil {
		return Entry{}, false, &Problem{File: name, Offset: f.off, Seq: rec.Seq, HasSeq: true, Err: err}
	}
	f.first = false
	f.off += e.Size
	return e, true, nil
}
