package policywatch

import (
	"os"
	"syscall"
	"time"
)

// Version identifies one version of a file: its size, modification time
// and inode. The zero Version is an absent (or unreadable) file.
type Version struct {
	size  int64
	mtime time.Time
	ino   uint64
}

// Stat returns the version of the file at path now; the zero Version when
// it cannot be stat'ed.
func Stat(path string) Version {
	st, err := os.Stat(path)
	if err != nil {
		return Version{}
	}
	v := Version{size: st.Size(), mtime: st.ModTime()}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		v.ino = uint64(sys.Ino)
	}
	return v
}

// File is a policy file watched for changes. A File with no Path never
// changes. Mark and Changed must not be called concurrently.
type File struct {
	Path string
	seen Version
}

// Mark records the file's version now as the one about to be read. Call
// it just before reading the file.
func (f *File) Mark() { f.seen = Stat(f.Path) }

// Changed reports whether the file's version differs from the one marked
// last (never marked: whether the file exists).
func (f *File) Changed() bool { return f.Path != "" && Stat(f.Path) != f.seen }
