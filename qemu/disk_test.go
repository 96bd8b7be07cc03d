package qemu

import (
	"bytes"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestCopySparseKeepsContentAndHoles(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src.img")
	f, err := os.Create(src)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("GPT header"), 512); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("perm data"), 40<<20); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(64 << 20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	dst := filepath.Join(dir, "dst.img")
	if err := copySparse(src, dst); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(src)
	b, _ := os.ReadFile(dst)
	if !bytes.Equal(a, b) {
		t.Fatal("copy differs from the source")
	}
	st, err := os.Stat(dst)
	if err != nil {
		t.Fatal(err)
	}
	if blocks := st.Sys().(*syscall.Stat_t).Blocks * 512; blocks > 8<<20 {
		t.Errorf("copy of a 64 MiB image with 2 small extents allocates %d bytes: holes were filled", blocks)
	}
	if err := copySparse(src, filepath.Join(dir, "missing", "x")); err == nil {
		t.Error("copy into a missing directory succeeded")
	}
}

func TestEnsureRawDisk(t *testing.T) {
	p := filepath.Join(t.TempDir(), "perm.img")
	if err := ensureRawDisk(p, 0); err == nil {
		t.Error("created a disk without a size")
	}
	if err := ensureRawDisk(p, 32<<20); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("kept"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := ensureRawDisk(p, 32<<20); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "kept" {
		t.Errorf("an existing disk was replaced: %q", b)
	}
}

func TestSweepRemovesOnlyOrphanedVMDirectories(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	mine, err := os.MkdirTemp("", "otgate-qemu-")
	if err != nil {
		t.Fatal(err)
	}
	if err := writeOwner(mine); err != nil {
		t.Fatal(err)
	}
	orphan, err := os.MkdirTemp("", "otgate-qemu-")
	if err != nil {
		t.Fatal(err)
	}
	// pid 1 exists but did not start at tick 0: the owner is gone.
	if err := os.WriteFile(filepath.Join(orphan, ownerFile), []byte("1 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	unknown, err := os.MkdirTemp("", "otgate-qemu-")
	if err != nil {
		t.Fatal(err)
	}
	sweepStale()
	for dir, want := range map[string]bool{mine: true, orphan: false, unknown: true} {
		_, err := os.Stat(dir)
		if got := err == nil; got != want {
			t.Errorf("%s: exists %v after sweep, want %v", dir, got, want)
		}
	}
}
