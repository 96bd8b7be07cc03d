package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/otgate/otgate/internal/bootcfg"
	"golang.org/x/sys/unix"
)

// prepareDirs gives svc its directories before a start (bootcfg.Service
// OwnedDirs and GroupReadDirs; see there). It is idempotent, never
// follows a symlink where a directory belongs, and returns a summary for
// the log ("" when the service has none).
func prepareDirs(svc *bootcfg.Service) (string, error) {
	uid, gid := int(svc.UID), int(svc.GID)
	var notes []string
	for _, d := range svc.OwnedDirs {
		if err := ownDir(d, uid, gid); err != nil {
			return "", err
		}
	}
	if len(svc.OwnedDirs) > 0 {
		notes = append(notes, fmt.Sprintf("%s owned by %d:%d (0700)", strings.Join(svc.OwnedDirs, ", "), uid, gid))
	}
	for _, d := range svc.GroupReadDirs {
		n, err := groupReadable(d, gid)
		if err != nil {
			return "", err
		}
		notes = append(notes, fmt.Sprintf("%s readable by group %d (%d files)", d, gid, n))
	}
	return strings.Join(notes, "; "), nil
}

// ownDir creates dir if missing and makes it, and the entries directly in
// it (files a root tool left there, an admin's copy of a store), uid:gid
// with the directory at mode 0700.
func ownDir(dir string, uid, gid int) error {
	ents, err := claimDir(dir, 0o700, uid, gid)
	if err != nil {
		return err
	}
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		if err := os.Lchown(p, uid, gid); err != nil {
			return fmt.Errorf("chown %s: %w", p, err)
		}
	}
	return nil
}

// groupReadable makes dir root:gid, mode 2750, and its regular files
// root:gid, mode 0640. It returns how many files it found.
func groupReadable(dir string, gid int) (int, error) {
	ents, err := claimDir(dir, 0o750|os.ModeSetgid, 0, gid)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		p := filepath.Join(dir, e.Name())
		if err := os.Lchown(p, 0, gid); err != nil {
			return n, fmt.Errorf("chown %s: %w", p, err)
		}
		if err := os.Chmod(p, 0o640); err != nil {
			return n, fmt.Errorf("chmod %s: %w", p, err)
		}
		n++
	}
	return n, nil
}

// claimDir creates dir if missing, refuses anything but a directory
// there, gives it uid:gid and mode, and returns its entries.
func claimDir(dir string, mode os.FileMode, uid, gid int) ([]os.DirEntry, error) {
	if err := mkdir(dir, mode.Perm()); err != nil {
		return nil, err
	}
	if err := checkDir(dir); err != nil {
		return nil, err
	}
	if err := os.Lchown(dir, uid, gid); err != nil {
		return nil, fmt.Errorf("chown %s: %w", dir, err)
	}
	if err := os.Chmod(dir, mode); err != nil {
		return nil, fmt.Errorf("chmod %s: %w", dir, err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", dir, err)
	}
	return ents, nil
}

// mkdir creates dir with mode perm if it is missing, and missing parents
// root-owned with mode 0755 (like systemd's StateDirectory=): a parent the
// service cannot walk through would make its directory useless.
func mkdir(dir string, perm os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(dir), err)
	}
	if err := os.Mkdir(dir, perm); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	return nil
}

// checkDir fails unless dir itself (not a symlink's target) is a
// directory.
func checkDir(dir string) error {
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		return fmt.Errorf("%s: %w", dir, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return fmt.Errorf("%s: not a directory (a symlink or file where the service's directory belongs)", dir)
	}
	return nil
}
