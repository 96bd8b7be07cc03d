//go:build unix

package audit

import (
	"fmt"

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
