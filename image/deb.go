package image

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
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
// supported; an entry that could write or point outside dst is an error
// (see extractTar). The caller unpacks into a temporary directory and
// removes it on error: nothing half-unpacked is kept.
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

// maxUnpackedSize bounds what one package may unpack (the kept entries'
// bytes together): the amd64 kernel package unpacks to about 400 MiB; a
// package that claims more is not unpacked to the end.
var maxUnpackedSize = int64(4 << 30)

// extractTar writes the kept entries of the tar stream r below dst. It
// never writes outside dst: an absolute or ".." path, an entry below a
// symlink of the archive, a symlink whose target is absolute or has a
// ".." (only links that go down stay inside, whatever other links the
// package has), an entry
// that would replace one already written (tar lets a later entry
// overwrite an earlier one, through a symlink too), and any type but
// regular file, directory and symlink are errors naming the entry; so is
// more than maxUnpackedSize bytes.
func extractTar(r io.Reader, dst string, keep func(string) bool, files map[string]unpackedFile) error {
	tr := tar.NewReader(r)
	links := map[string]bool{}
	var total int64
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
		for d := path.Dir(name); d != "."; d = path.Dir(d) {
			if links[d] {
				return fmt.Errorf("entry %q: its parent %s is a symlink of the package: not followed", h.Name, d)
			}
		}
		bad := func(err error) error { return fmt.Errorf("entry %q: %w", h.Name, err) }
		out := filepath.Join(dst, filepath.FromSlash(name))
		switch h.Typeflag {
		case tar.TypeDir:
			if links[name] {
				return fmt.Errorf("entry %q: a directory where the package has a symlink", h.Name)
			}
			if err := os.MkdirAll(out, 0o755); err != nil {
				return bad(err)
			}
		case tar.TypeReg:
			if h.Size < 0 || h.Size > maxUnpackedSize-total {
				return fmt.Errorf("entry %q: %d bytes: the package would unpack to more than %d bytes", h.Name, h.Size, maxUnpackedSize)
			}
			total += h.Size
			if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
				return bad(err)
			}
			// O_EXCL: a second entry of the same name, or one over a
			// symlink, is refused rather than written through.
			w, err := os.OpenFile(out, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
			if errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("entry %q: an earlier entry of the package has that name: not overwritten", h.Name)
			}
			if err != nil {
				return bad(err)
			}
			fh := sha256.New()
			n, err := io.Copy(io.MultiWriter(w, fh), tr)
			if err != nil {
				w.Close()
				return bad(err)
			}
			if err := w.Close(); err != nil {
				return bad(err)
			}
			files[name] = unpackedFile{size: n, sum: hex.EncodeToString(fh.Sum(nil))}
		case tar.TypeSymlink:
			// Only links that go down from their directory: "..", even
			// one that looks like it stays inside, can leave dst through
			// another link of the package.
			if h.Linkname == "" || path.IsAbs(h.Linkname) || slices.Contains(strings.Split(h.Linkname, "/"), "..") {
				return fmt.Errorf("entry %q: symlink to %q: only a relative target without \"..\" is unpacked (it could leave the extraction directory)", h.Name, h.Linkname)
			}
			if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
				return bad(err)
			}
			if err := os.Symlink(h.Linkname, out); err != nil {
				return bad(err)
			}
			links[name] = true
		default:
			// Hard links, devices and fifos do not occur in the packages
			// the builder reads; skipping them would hide a surprise.
			return fmt.Errorf("entry %q: unsupported tar type %q", h.Name, h.Typeflag)
		}
	}
}
