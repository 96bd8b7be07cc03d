package audit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Retention bounds the space the log takes on a gate whose disk is
// finite and whose log is not (WithRetention).
//
// The oldest files go first, whole, and only when every record in them is
// signed by a checkpoint and Removable allows it (the proxy: exported to
// the SIEM). Before a file goes, the log records a "log-pruned" event
// naming it, its seq range and the hash of its last record, durably and
// signed by a checkpoint (a signer that does not answer holds the file): the
// chain from the first file left still starts at that hash, so Verify
// accepts a log whose missing oldest files the log itself says it removed
// (and still refuses one whose files went missing otherwise, unless
// Trust.AllowPartial). A file that cannot go yet stays, and the log grows
// past MaxBytes until it can (StorageState says why): evidence not yet
// exported is never deleted to make room.
//
// Reserve is the free space on the log's file system below which
// Append refuses a SessionStart (ErrStorageFull): a gate that can no
// longer promise to record a session does not start one, and the space
// left lets running sessions, and the other state on that file system,
// go on.
type Retention struct {
	// MaxBytes is the budget of the log's files together; 0: no bound.
	MaxBytes int64
	// Reserve: see above; 0: none.
	Reserve int64
	// Removable returns the highest seq of log logID (the Writer's log)
	// whose record may be removed (ok false: none may). Nil: any signed
	// record.
	Removable func(logID string) (throughSeq uint64, ok bool)
}

// WithRetention bounds the log's size (see Retention).
func WithRetention(r Retention) Option { return func(c *config) { c.retention = r } }

// EventLogPruned is appended before the log removes its oldest file
// (Event.Pruned says which); only the Writer appends it.
const EventLogPruned = "log-pruned"

// Pruned describes a log file the log removed: its index, the seqs of its
// first and last records, and the hash of its last record (the PrevHead of
// the next file's rotation record).
type Pruned struct {
	File     uint64 `cbor:"1,keyasint"`
	FirstSeq uint64 `cbor:"2,keyasint"`
	LastSeq  uint64 `cbor:"3,keyasint"`
	Head     []byte `cbor:"4,keyasint"`
}

// ErrStorageFull: the log's file system has less free space than the
// reserve, so no new session is started.
var ErrStorageFull = errors.New("audit log storage full")

// StorageState is the log's use of its disk: Bytes in Files log files,
// the budget and reserve it was given, the file system's free space, and
// why the oldest file cannot be removed while the log is over its budget
// (Held, "" when it is not).
type StorageState struct {
	Bytes    int64
	Files    int
	MaxBytes int64
	Free     int64
	Reserve  int64
	Held     string
}

// StorageState returns the log's use of its disk now.
func (w *Writer) StorageState() (StorageState, error) {
	st := StorageState{MaxBytes: w.cfg.retention.MaxBytes, Reserve: w.cfg.retention.Reserve}
	files, sizes, err := fileSizes(w.dir)
	if err != nil {
		return st, err
	}
	st.Files = len(files)
	for _, s := range sizes {
		st.Bytes += s
	}
	if st.Free, err = freeBytes(w.dir); err != nil {
		return st, err
	}
	w.mu.Lock()
	st.Held = w.pruneHeld
	w.mu.Unlock()
	return st, nil
}

// fileSizes lists the log files of dir and their sizes. A file removed
// between the listing and its stat (the retention, while StorageState
// runs on another goroutine) is left out.
func fileSizes(dir string) ([]logFile, []int64, error) {
	files, err := listFiles(dir)
	if err != nil {
		return nil, nil, err
	}
	kept := files[:0]
	sizes := make([]int64, 0, len(files))
	for _, f := range files {
		fi, err := os.Stat(filepath.Join(dir, f.name))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("audit log: %w", err)
		}
		kept = append(kept, f)
		sizes = append(sizes, fi.Size())
	}
	return kept, sizes, nil
}

// checkReserve refuses a session start when the file system is below the
// reserve.
func (w *Writer) checkReserve() error {
	r := w.cfg.retention.Reserve
	if r <= 0 {
		return nil
	}
	free, err := freeBytes(w.dir)
	if err != nil {
		return err
	}
	if free < r {
		w.mu.Lock()
		held := w.pruneHeld
		w.mu.Unlock()
		why := ""
		if held != "" {
			why = "; the oldest log file cannot be removed yet: " + held
		}
		return fmt.Errorf("%w: %d MiB free on the audit log's file system, below the reserve of %d MiB kept for running sessions%s",
			ErrStorageFull, free>>20, r>>20, why)
	}
	return nil
}

// prune removes the oldest files while the log is over its budget (see
// Retention). It runs on the writer's loop goroutine; failures are
// reported to the error handler and retried at the next rotation or
// checkpoint tick.
func (w *Writer) prune() {
	max := w.cfg.retention.MaxBytes
	if max <= 0 {
		return
	}
	held := ""
	defer func() {
		w.mu.Lock()
		w.pruneHeld = held
		w.mu.Unlock()
	}()
	for {
		files, sizes, err := fileSizes(w.dir)
		if err != nil {
			w.cfg.onError(fmt.Errorf("audit log retention: %w", err))
			return
		}
		var total int64
		for _, s := range sizes {
			total += s
		}
		if total <= max || len(files) < 2 {
			return
		}
		w.mu.Lock()
		current, signedBefore := w.fileName, w.nextUnsigned
		w.mu.Unlock()
		oldest := files[0]
		if oldest.name == current {
			return
		}
		first, err := readRotation(w.dir, oldest)
		if err != nil {
			w.cfg.onError(fmt.Errorf("audit log retention: %w", err))
			return
		}
		next, err := readRotation(w.dir, files[1])
		if err != nil {
			w.cfg.onError(fmt.Errorf("audit log retention: %w", err))
			return
		}
		if next.seq == 0 || files[1].index != oldest.index+1 {
			held = fmt.Sprintf("%s is not followed by the next file of the chain", oldest.name)
			return
		}
		last := next.seq - 1
		if last >= signedBefore {
			held = fmt.Sprintf("%s holds records no checkpoint signs yet (seq %d)", oldest.name, last)
			return
		}
		if rm := w.cfg.retention.Removable; rm != nil {
			through, ok := rm(w.logID)
			if !ok || through < last {
				exported := "none"
				if ok {
					exported = fmt.Sprintf("through seq %d", through)
				}
				held = fmt.Sprintf("%s (seq %d..%d) is not exported yet (exported: %s)", oldest.name, first.seq, last, exported)
				return
			}
		}
		rec := w.prunePending
		if rec.file != oldest.index || !rec.ok {
			ev := Event{Type: EventLogPruned, Pruned: &Pruned{File: oldest.index, FirstSeq: first.seq, LastSeq: last, Head: next.prevHead},
				Reason: fmt.Sprintf("removed %s (seq %d..%d, %d bytes): the log's %d bytes in %d files are over its budget of %d bytes",
					oldest.name, first.seq, last, sizes[0], total, len(files), max)}
			pos, err := w.appendDurable(ev)
			if err != nil {
				if !errors.Is(err, ErrClosed) {
					w.cfg.onError(fmt.Errorf("audit log retention: %w", err))
				}
				return
			}
			rec = prunePending{file: oldest.index, seq: pos.Seq, ok: true}
			w.prunePending = rec
		}
		// Verify accepts the missing file only on a signed log-pruned
		// record: it is signed before the file goes, so that the log as
		// the disk holds it at any moment (a power cut, a copy taken for
		// an audit, a signer that stopped answering) verifies.
		if _, err := w.checkpoint(context.Background(), appendInternal); err != nil && !errors.Is(err, ErrClosed) {
			w.cfg.onError(fmt.Errorf("audit log retention: sign the log-pruned record of %s: %w", oldest.name, err))
		}
		// nextUnsigned moves when the checkpoint is written, before it is
		// durable: a write or fsync that failed since (the sticky error)
		// leaves the signature unsure, and the file stays.
		w.mu.Lock()
		signed := w.nextUnsigned > rec.seq && w.err == nil
		w.mu.Unlock()
		if !signed {
			held = fmt.Sprintf("%s: the log-pruned record naming it (seq %d) is not signed yet", oldest.name, rec.seq)
			return
		}
		if err := os.Remove(filepath.Join(w.dir, oldest.name)); err != nil {
			w.cfg.onError(fmt.Errorf("audit log retention: %w", err))
			return
		}
		if err := syncDir(w.dir); err != nil {
			w.cfg.onError(fmt.Errorf("audit log retention: %w", err))
			return
		}
	}
}

// prunePending is the log-pruned record prune appended in this run for
// file (seq), so that a removal held until it is signed does not append
// another; only the loop goroutine uses it.
type prunePending struct {
	file, seq uint64
	ok        bool
}

type rotationInfo struct {
	seq      uint64
	prevHead []byte
}

// readRotation reads the rotation record that starts file f.
func readRotation(dir string, f logFile) (rotationInfo, error) {
	fh, err := os.Open(filepath.Join(dir, f.name))
	if err != nil {
		return rotationInfo{}, err
	}
	defer fh.Close()
	sc, err := newFrameScanner(fh, f.name)
	if err != nil {
		return rotationInfo{}, err
	}
	payload, off, err := sc.next()
	if err == io.EOF {
		err = fmt.Errorf("%s: no rotation record", f.name)
	}
	if err != nil {
		return rotationInfo{}, err
	}
	rec, body, _, err := DecodeRecord(payload)
	if err != nil {
		return rotationInfo{}, &Problem{File: f.name, Offset: off, Err: err}
	}
	rot, ok := body.(Rotation)
	if !ok {
		return rotationInfo{}, &Problem{File: f.name, Offset: off, Err: fmt.Errorf("%w: first record is not a rotation record", ErrChain)}
	}
	return rotationInfo{seq: rec.Seq, prevHead: rot.PrevHead}, nil
}
