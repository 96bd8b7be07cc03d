//go:build unix

package client

import (
	"io/fs"
	"syscall"
)

// modesProtect: the owner and the mode bits are what protect the profile.
const modesProtect = true

// fileOwner is the uid owning fi.
func fileOwner(fi fs.FileInfo) (int, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return int(st.Uid), true
}
