package qemu

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// ensureRawDisk creates path as a sparse raw file of size bytes unless it
// exists already.
func ensureRawDisk(path string, size int64) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("qemu: disk %s: %w", path, err)
	}
	if size <= 0 {
		return fmt.Errorf("qemu: disk %s does not exist and WithDisk gave no size to create it", path)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".disk-*")
	if err != nil {
		return fmt.Errorf("qemu: create disk %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Truncate(size); err != nil {
		tmp.Close()
		return fmt.Errorf("qemu: size disk %s to %d bytes: %w", path, size, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("qemu: create disk %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("qemu: create disk %s: %w", path, err)
	}
	return nil
}

// copySparse copies src to dst (created, must not exist) skipping runs of
// zeros, so a mostly empty disk image costs little time and space.
func copySparse(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("qemu: copy disk image: %w", err)
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return fmt.Errorf("qemu: copy disk image %s: %w", src, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".copy-*")
	if err != nil {
		return fmt.Errorf("qemu: copy %s to %s: %w", src, dst, err)
	}
	defer os.Remove(tmp.Name())
	buf := make([]byte, 1<<20)
	zero := make([]byte, len(buf))
	var off int64
	for {
		n, err := io.ReadFull(in, buf)
		if n > 0 && !bytes.Equal(buf[:n], zero[:n]) {
			if _, werr := tmp.WriteAt(buf[:n], off); werr != nil {
				tmp.Close()
				return fmt.Errorf("qemu: copy %s to %s: %w", src, dst, werr)
			}
		}
		off += int64(n)
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			tmp.Close()
			return fmt.Errorf("qemu: read %s: %w", src, err)
		}
	}
	if err := tmp.Truncate(st.Size()); err != nil {
		tmp.Close()
		return fmt.Errorf("qemu: copy %s to %s: %w", src, dst, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("qemu: copy %s to %s: %w", src, dst, err)
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return fmt.Errorf("qemu: copy %s to %s: %w", src, dst, err)
	}
	return nil
}
