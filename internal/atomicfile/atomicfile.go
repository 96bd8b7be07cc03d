// Package atomicfile writes state files so that a crash or power cut at any
// moment leaves either the previous or the new content, never a mix: the
// data goes to a temporary file in the same directory, which is synced,
// renamed over the target, and then the directory itself is synced.
//
// Every step goes through a Step hook so tests can simulate a crash after
// any step (the write stops there and nothing is cleaned up, just as if
// the power had gone).
package atomicfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Step names one point in the write sequence.
type Step int

// The steps of Write, in order.
const (
	StepCreateTemp Step = iota + 1
	StepWriteHalf
	StepWriteAll
	StepSyncFile
	StepCloseFile
	StepRename
	StepSyncDir
)

// Steps lists every step in order (for crash tests).
var Steps = []Step{StepCreateTemp, StepWriteHalf, StepWriteAll, StepSyncFile, StepCloseFile, StepRename, StepSyncDir}

func (s Step) String() string {
	switch s {
	case StepCreateTemp:
		return "create-temp"
	case StepWriteHalf:
		return "write-half"
	case StepWriteAll:
		return "write-all"
	case StepSyncFile:
		return "sync-file"
	case StepCloseFile:
		return "close-file"
	case StepRename:
		return "rename"
	case StepSyncDir:
		return "sync-dir"
	}
	return fmt.Sprintf("step(%d)", int(s))
}

// ErrCrash is what a Hook returns to simulate a crash after a step.
var ErrCrash = errors.New("atomicfile: simulated crash")

// Hook is called after each completed step; a non-nil error stops the
// write right there, without any cleanup (as a crash would).
type Hook func(Step) error

// TempPrefix starts the name of every temporary file, so readers can skip
// (and Clean can remove) leftovers of an interrupted write.
const TempPrefix = ".tmp-"

// Write replaces path with data atomically and durably.
func Write(path string, data []byte, perm os.FileMode) error {
	return WriteHooked(path, data, perm, nil)
}

// WriteHooked is Write with a step hook (nil: none).
func WriteHooked(path string, data []byte, perm os.FileMode, hook Hook) error {
	after := func(s Step) error {
		if hook == nil {
			return nil
		}
		if err := hook(s); err != nil {
			return fmt.Errorf("write %s: after %s: %w", path, s, err)
		}
		return nil
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, TempPrefix+base+"-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := after(StepCreateTemp); err != nil {
		return err
	}
	tmp := f.Name()
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	half := len(data) / 2
	if _, err := f.Write(data[:half]); err != nil {
		return fail(err)
	}
	if err := after(StepWriteHalf); err != nil {
		return err
	}
	if _, err := f.Write(data[half:]); err != nil {
		return fail(err)
	}
	if err := after(StepWriteAll); err != nil {
		return err
	}
	if err := f.Chmod(perm); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := after(StepSyncFile); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: close: %w", path, err)
	}
	if err := after(StepCloseFile); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := after(StepRename); err != nil {
		return err
	}
	if err := SyncDir(dir); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return after(StepSyncDir)
}

// SyncDir fsyncs a directory so a rename in it is durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}

// MkdirAll creates dir and any missing parents like os.MkdirAll and
// fsyncs the parent of every directory it created, outermost first, so
// that the new entries survive a power cut (files fsynced inside a
// directory whose own entry was never fsynced can vanish with it).
// syncDir fsyncs one directory (nil: SyncDir); callers pass their own to
// observe it in tests.
func MkdirAll(dir string, perm os.FileMode, syncDir func(string) error) error {
	if syncDir == nil {
		syncDir = SyncDir
	}
	dir = filepath.Clean(dir)
	var missing []string // dir and its missing ancestors, innermost first
	for p := dir; ; p = filepath.Dir(p) {
		if _, err := os.Lstat(p); err == nil {
			break
		} else if !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("create directory %s: %w", dir, err)
		}
		missing = append(missing, p)
		if filepath.Dir(p) == p {
			break
		}
	}
	if err := os.MkdirAll(dir, perm); err != nil {
		return err
	}
	for i := len(missing) - 1; i >= 0; i-- {
		if err := syncDir(filepath.Dir(missing[i])); err != nil {
			return err
		}
	}
	return nil
}

// Clean removes leftovers of interrupted writes of path (temporary files
// next to it). It never touches path itself.
func Clean(path string) error {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	var errs []error
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), TempPrefix+base+"-") {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
