//go:build unix

package audit

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// freeBytes is the space an unprivileged writer may still use on dir's
// file system (the proxy does not run as root: the root reserve is not
// its to use).
func freeBytes(dir string) (int64, error) {
	var s unix.Statfs_t
	if err := unix.Statfs(dir, &s); err != nil {
		return 0, fmt.Errorf("audit log: statfs %s: %w", dir, err)
	}
	return int64(s.Bavail) * int64(s.Bsize), nil
}

// lockDir takes an exclusive flock on dir (released when the returned
// file is closed, or the process ends): a second Writer on the same log
// is refused with ErrInUse. A file system that cannot flock a directory
// is used unlocked: the lock guards against a mistake (a second proxy
// started by hand), it does not stand between the log and an attacker.
func lockDir(dir string) (*os.File, error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("open audit log: %w", err)
	}
	if err := unix.Flock(int(d.Fd()), unix.LOCK_EX|unix.LOCK_NB); errors.Is(err, unix.EWOULDBLOCK) {
		d.Close()
		return nil, fmt.Errorf("open audit log %s: %w (is another otgate-proxy running?)", dir, ErrInUse)
	}
	return d, nil
}
