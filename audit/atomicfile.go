package audit

import (
	"fmt"
	"os"
	"path/filepath"
)

// dirSynced, when set (tests), is told of every directory syncDir fsynced.
var dirSynced func(dir string)

// syncDir fsyncs a directory so renames and creations in it are durable.
func syncDir(dir string) error {
	if dirSynced != nil {
		defer dirSynced(dir)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	return nil
}

// createDurable writes content to dir/name through a temporary file
// (write, fsync, rename, fsync dir) and returns the file open for
// reading and writing. name must not exist yet.
func createDurable(dir, name string, content []byte) (*os.File, error) {
	final := filepath.Join(dir, name)
	if _, err := os.Lstat(final); err == nil {
		return nil, fmt.Errorf("create %s: already exists", final)
	}
	tmp := final + ".tmp"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", tmp, err)
	}
	fail := func(err error) (*os.File, error) {
		f.Close()
		os.Remove(tmp)
		return nil, err
	}
	if _, err := f.Write(content); err != nil {
		return fail(fmt.Errorf("write %s: %w", tmp, err))
	}
	if err := f.Sync(); err != nil {
		return fail(fmt.Errorf("fsync %s: %w", tmp, err))
	}
	if err := os.Rename(tmp, final); err != nil {
		return fail(fmt.Errorf("rename %s: %w", tmp, err))
	}
	f.Close()
	if err := syncDir(dir); err != nil {
		return nil, err
	}
	// Reopen under the final name so errors name the real file.
	if f, err = os.OpenFile(final, os.O_RDWR, 0); err != nil {
		return nil, fmt.Errorf("reopen %s: %w", final, err)
	}
	return f, nil
}
