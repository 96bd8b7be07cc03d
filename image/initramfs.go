package image

import (
	"bytes"
	"fmt"
	"io"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/u-root/u-root/pkg/cpio"
)

// writeInitramfs writes t as a zstd-compressed newc cpio archive. The
// archive is reproducible: records in path order, parents first, sequential
// inode numbers, zero mtimes/uids/devices (cpio.MakeReproducible); the
// encoder (klauspost/compress, pinned in go.mod) runs single-threaded at a
// fixed level, so the bytes depend only on the tree and the pinned
// versions. zstd at its best level is 25% smaller than gzip -9 and 2.5x
// faster to write (BenchmarkInitramfsCompression); both Debian kernels
// have CONFIG_RD_ZSTD.
func writeInitramfs(w io.Writer, t *fileTree) error {
	var recs []cpio.Record
	for i, name := range t.names() {
		e := t.entries[name]
		rel := strings.TrimPrefix(name, "/")
		if rel == "" {
			rel = "."
		}
		info := cpio.Info{Name: rel, Ino: uint64(i + 1), NLink: 1}
		switch e.kind {
		case kindDir:
			info.Mode = cpio.S_IFDIR | uint64(e.perm)
			info.NLink = 2
		case kindFile:
			info.Mode = cpio.S_IFREG | uint64(e.perm)
		case kindSymlink:
			info.Mode = cpio.S_IFLNK | 0o777
		case kindCharDev:
			info.Mode = cpio.S_IFCHR | uint64(e.perm)
			info.Rmajor, info.Rminor = uint64(e.major), uint64(e.minor)
		}
		rec := cpio.StaticRecord(e.data, info)
		recs = append(recs, rec)
	}
	cpio.MakeAllReproducible(recs)
	zw, err := zstd.NewWriter(w, zstd.WithEncoderConcurrency(1), zstd.WithEncoderLevel(zstd.SpeedBestCompression))
	if err != nil {
		return err
	}
	cw := cpio.Newc.Writer(zw)
	if err := cpio.WriteRecords(cw, recs); err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	if err := cpio.WriteTrailer(cw); err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	return zw.Close()
}

// readInitramfs lists the records of a zstd-compressed newc archive (for
// tests and inspection).
func readInitramfs(b []byte) ([]cpio.Record, error) {
	zr, err := zstd.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	defer zr.Close()
	raw, err := io.ReadAll(zr)
	if err != nil {
		return nil, err
	}
	return cpio.ReadAllRecords(cpio.EOFReader{RecordReader: cpio.Newc.Reader(bytes.NewReader(raw))})
}
