package syslog

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/fxamacker/cbor/v2"
)

// Cursor is the exporter's persisted position: the last record known to
// have reached the receiver.
type Cursor struct {
	LogID string `cbor:"1,keyasint"`
	Seq   uint64 `cbor:"2,keyasint"`
	Hash  []byte `cbor:"3,keyasint"`
}

// LoadCursor reads the cursor at path; ok is false if there is none yet.
func LoadCursor(path string) (c Cursor, ok bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return Cursor{}, false, nil
	}
	if err != nil {
		return Cursor{}, false, fmt.Errorf("read export cursor: %w", err)
	}
	dm, _ := cbor.DecOptions{ExtraReturnErrors: cbor.ExtraDecErrorUnknownField}.DecMode()
	if err := dm.Unmarshal(b, &c); err != nil {
		return Cursor{}, false, fmt.Errorf("export cursor %s: %w", path, err)
	}
	if c.LogID == "" {
		return Cursor{}, false, fmt.Errorf("export cursor %s: no log id", path)
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
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return fmt.Errorf("fsync export cursor directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync export cursor directory: %w", err)
	}
	return nil
}
