//go:build !windows

package client

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// restrictDir makes the profile directory the user's alone (0700), or
// refuses one that others may write in (checkDir).
func restrictDir(dir string) error {
	if err := checkDir(dir); err != nil {
		return err
	}
	return os.Chmod(dir, 0o700)
}

// checkDir refuses an existing directory of another user, or one that
// other users may write in (as ssh refuses such a ~/.ssh): they may have put a profile there
// already, pinning their own key for the gate, which a login would then
// enforce; and tightening one such as /tmp, given as --profile, would
// break it for everyone else.
func checkDir(dir string) error {
	if err := checkParents(dir); err != nil {
		return err
	}
	st, err := os.Stat(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if uid, ok := fileOwner(st); ok && uid != os.Geteuid() {
		// Its owner could read the key, and chmod it back after us.
		return &UnprotectedError{Path: dir, Kind: kindDir, Mode: st.Mode(), Owner: uid, Own: os.Geteuid()}
	}
	mode := st.Mode()
	if mode&os.ModeSticky == 0 && mode.Perm()&0o022 == 0 {
		return nil
	}
	m := uint32(mode.Perm())
	if mode&os.ModeSticky != 0 {
		m |= 0o1000
	}
	return fmt.Errorf("profile directory %s is writable by other users (mode %04o): give a directory of your own (it is left as it is)", dir, m)
}

// checkParents refuses a profile directory whose parents another user
// could rename it out of, as OpenSSH's safe_path (StrictModes) refuses a
// path to authorized_keys: each directory above it, up to /, must belong
// to the user or to root and must not be writable by group or others;
// otherwise whoever may write in one can move the profile directory away
// and put one of theirs in its place (their gate's pin, their
// credential), whatever the modes of the directory and files themselves.
// A sticky directory (/tmp, 1777) passes, as the kernel lets no one but
// its owner (and the directory's) rename or remove an entry in it: the
// entry below it is checked as the others are. Symbolic links on the way
// are followed and the directories above their targets checked too.
// Directories that do not exist yet are skipped: a login makes them 0700.
func checkParents(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("profile directory %s: %w", dir, err)
	}
	if fi, err := os.Lstat(abs); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
		real, err := filepath.EvalSymlinks(abs)
		if err != nil {
			return fmt.Errorf("profile directory %s: %w", dir, err)
		}
		if err := checkAbove(real, abs); err != nil {
			return err
		}
	}
	return checkAbove(abs, abs)
}

// checkAbove checks each directory above path (checkParents); holds is
// the profile directory, for the error.
func checkAbove(path, holds string) error {
	for p := filepath.Dir(path); ; p = filepath.Dir(p) {
		fi, err := os.Lstat(p)
		switch {
		case errors.Is(err, os.ErrNotExist):
		case err != nil:
			return fmt.Errorf("profile directory %s: %w", holds, err)
		case fi.Mode()&fs.ModeSymlink != 0:
			// Who may change the link is the owner of the directory
			// holding it, checked next; where it points is checked here.
			real, err := filepath.EvalSymlinks(p)
			if err != nil {
				return fmt.Errorf("profile directory %s: %w", holds, err)
			}
			rfi, err := os.Stat(real)
			if err != nil {
				return fmt.Errorf("profile directory %s: %w", holds, err)
			}
			if err := checkParent(real, rfi, holds); err != nil {
				return err
			}
			if err := checkAbove(real, holds); err != nil {
				return err
			}
		default:
			if err := checkParent(p, fi, holds); err != nil {
				return err
			}
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}

// checkParent checks one directory above the profile directory holds.
func checkParent(p string, fi fs.FileInfo, holds string) error {
	own := os.Geteuid()
	if uid, ok := fileOwner(fi); ok && uid != own && uid != 0 {
		return &UnprotectedError{Path: p, Kind: kindParent, Mode: fi.Mode(), Owner: uid, Own: own, Holds: holds}
	}
	if fi.Mode()&fs.ModeSticky == 0 && fi.Mode().Perm()&0o022 != 0 {
		return &UnprotectedError{Path: p, Kind: kindParent, Mode: fi.Mode(), Owner: -1, Own: own, Holds: holds}
	}
	return nil
}
