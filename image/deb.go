package image

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/blakesmith/ar"
	"github.com/ulikunitz/xz"
)

// extractDeb unpacks the data.tar.xz member of the Debian package at debPath
// below dst, keeping only the entries for which keep returns true (keep
// receives the clean relative path, e.g. "boot/vmlinuz-6.1.0-56-amd64"),
// and records the size and sha256 of every regular file in files. The
// package's bytes are hashed as they are read: when they do not have
// sha256 want (the file changed since it was verified), the unpack is an
// error wrapping ErrChecksum. Regular files, directories and symlinks are
// supported; any entry whose path would leave dst is an error.
func extractDeb(debPath, want, dst string, keep func(name string) bool, files map[string]unpackedFile) error {
	f, err := os.Open(debPath)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	in := io.TeeReader(f, h)
	r := ar.NewReader(in)
	for {
		hd, err := r.Next()
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("%s: no data.tar.xz member", debPath)
		}
		if err != nil {
			return fmt.Errorf("%s: read ar archive: %w", debPath, err)
		}
		name := strings.TrimRight(hd.Name, "/")
		if !strings.HasPrefix(name, "data.tar") {
			continue
		}
		if name != "data.tar.xz" {
			return fmt.Errorf("%s: unsupported member %q (want data.tar.xz)", debPath, name)
		}
		xr, err := xz.NewReader(r)
		if err != nil {
			return fmt.Errorf("%s: data.tar.xz: %w", debPath, err)
		}
		if err := extractTar(xr, dst, keep, files); err != nil {
			return fmt.Errorf("%s: data.tar.xz: %w", debPath, err)
		}
		if _, err := io.Copy(io.Discard, in); err != nil {
			return fmt.Errorf("%s: %w", debPath, err)
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != want {
			return fmt.Errorf("%s: %w: expected %s, got %s while unpacking (changed since it was verified)", debPath, ErrChecksum, want, got)
		}
		return nil
	}
}

func extractTar(r io.Reader, dst string, keep func(string) bool, files map[string]unpackedFile) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		name := path.Clean(strings.TrimPrefix(h.Name, "./"))
		if name == "." {
			continue
		}
		if path.IsAbs(name) || name == ".." || strings.HasPrefix(name, "../") {
			return fmt.Errorf("entry %q leaves the extraction directory", h.Name)
		}
		if !keep(name) {
			continue
		}
		out := filepath.Join(dst, filepath.FromSlash(name))
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(out, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
				return err
			}
			w, err := os.OpenFile(out, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
			if err != nil {
				return err
			}
			fh := sha256.New()
			n, err := io.Copy(io.MultiWriter(w, fh), tr)
			if err != nil {
				w.Close()
				return fmt.Errorf("entry %q: %w", h.Name, err)
			}
			if err := w.Close(); err != nil {
				return err
			}
			files[name] = unpackedFile{size: n, sum: hex.EncodeToString(fh.Sum(nil))}
		case tar.TypeSymlink:
			if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
				return err
			}
			if err := os.Symlink(h.Linkname, out); err != nil {
				return err
			}
		default:
			// Hard links, devices and fifos do not occur in the packages
			// the builder reads; skipping them would hide a surprise.
			return fmt.Errorf("entry %q: unsupported tar type %q", h.Name, h.Typeflag)
		}
	}
}
