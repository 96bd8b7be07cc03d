package syslog

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/fxamacker/cbor/v2"
)

// Cursor is the exporter's persisted position: the last record known to
// have reached the receiver, and what the exporter knew of the sessions
// open at that record.
type Cursor struct {
	LogID string `cbor:"1,keyasint"`
	Seq   uint64 `cbor:"2,keyasint"`
	Hash  []byte `cbor:"3,keyasint"`
	// Sessions are the sessions whose start is at or before Seq and whose
	// end is not: the labels their later records get. Saved in the same
	// atomic write as the position, so the two always agree; a session's
	// entry goes at its end (and every entry at a log-closed or
	// log-recovered event: no record of an earlier run follows those), so
	// it holds at most the sessions open at Seq. A cursor written before
	// this field existed has none and loads with an empty map.
	Sessions map[string]Labels `cbor:"4,keyasint,omitempty"`
}

// Labels are what a session start says that the exporter adds to the
// session's later records.
type Labels struct {
	User  string `cbor:"1,keyasint,omitempty"`
	Asset string `cbor:"2,keyasint,omitempty"`
}

// CursorDamagedError is a cursor file that exists but does not decode (or
// names no log): the exporter sets it aside (see Exporter.Run).
type CursorDamagedError struct {
	Path string
	Err  error
}

func (e *CursorDamagedError) Error() string {
	return fmt.Sprintf("export cursor %s: %v", e.Path, e.Err)
}
func (e *CursorDamagedError) Unwrap() error { return e.Err }

// LoadCursor reads the cursor at path; ok is false if there is none yet.
// A file that does not decode is a *CursorDamagedError.
func LoadCursor(path string) (c Cursor, ok bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return Cursor{}, false, nil
	}
	if err != nil {
		return Cursor{}, false, fmt.Errorf("read export cursor: %w", err)
	}
	// Unknown keys are refused: a cursor of a newer format is not half
	// understood (the exporter sets it aside and sends the log again from
	// its oldest record, see Exporter.Run).
	dm, _ := cbor.DecOptions{ExtraReturnErrors: cbor.ExtraDecErrorUnknownField}.DecMode()
	if err := dm.Unmarshal(b, &c); err != nil {
		return Cursor{}, false, &CursorDamagedError{Path: path, Err: err}
	}
	if c.LogID == "" {
		return Cursor{}, false, &CursorDamagedError{Path: path, Err: errors.New("no log id")}
	}
	return c, true, nil
}

// SaveCursor writes c to path atomically: temp file, fsync, rename, fsync
// of the directory.
func SaveCursor(path string, c Cursor) error {
	em, err := cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		return err
	}
	b, err := em.Marshal(c)
	if err != nil {
		return fmt.Errorf("encode export cursor: %w", err)
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("write export cursor: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("write export cursor %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("fsync export cursor %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close export cursor %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("install export cursor: %w", err)
	}
	return syncDir(filepath.Dir(path))
}

// syncDir fsyncs directory dir (a rename in it is then durable).
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("fsync export cursor directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync export cursor directory %s: %w", dir, err)
	}
	return nil
}
