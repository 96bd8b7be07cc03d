package main

import (
	"bytes"
	"crypto/sha256"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func fileSHA(t *testing.T, path string) [32]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum
}

// An ext4 /perm whose first 64 KiB were zeroed (a tool's mistake, or
// flash that lost its mapping in a power cut) is a damaged file system
// that e2fsck can rebuild from a backup superblock, not a blank disk:
// init never formats it (that would destroy the audit log and the sealed
// identity); /perm becomes a tmpfs with the loud warning and the disk is
// left exactly as it was. A disk that is blank all through is still
// formatted.
func TestPermNeverFormatsExt4WithZeroedStart(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "perm.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(160 << 20) // past group 1 with 4 KiB blocks too
	f.Close()
	if got, err := probeDisk(img); err != nil || got != diskBlank {
		t.Fatalf("blank image: %v, %v; want blank", got, err)
	}
	if _, err := formatExt4(img, 0); err != nil {
		t.Fatal(err)
	}
	if got, err := probeDisk(img); err != nil || got != diskExt4 {
		t.Fatalf("formatted image: %v, %v; want ext4", got, err)
	}
	f, err = os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(make([]byte, 64<<10), 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if got, err := probeDisk(img); err != nil || got != diskExt4Backup {
		t.Fatalf("ext4 with its first 64 KiB zeroed: %v, %v; want %v", got, err, diskExt4Backup)
	}
	if os.Getuid() != 0 {
		t.Skip("needs root for the tmpfs fallback")
	}
	before := fileSHA(t, img)
	mnt := t.TempDir()
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
	var buf bytes.Buffer
	st := setupPerm(newLogger(&buf), img, "/sys", "/dev", mnt, permWaitMin)
	if st.FSType != "tmpfs" || !strings.Contains(st.Warning, "backup superblock found") || !strings.Contains(st.Warning, "refusing to format") {
		t.Fatalf("%+v\n%s", st, buf.String())
	}
	if !strings.Contains(buf.String(), "WARNING: NO PERSISTENT STORAGE") || strings.Contains(buf.String(), "formatting") {
		t.Fatalf("log:\n%s", buf.String())
	}
	if fileSHA(t, img) != before {
		t.Fatal("the damaged disk was changed")
	}
}
