package image

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/otgate/otgate/board"
)

const (
	// unpackedComplete is the listing of an unpacked package directory:
	// a header line, then "sha256 size path" for every regular file
	// unpacked. It is written last, before the directory is renamed into
	// place.
	unpackedComplete = ".otgate-unpacked"
	unpackedHeader   = "otgate unpacked v2 "
	// unpackedDir, below the cache, holds the unpacked packages; the
	// unpacks of older builders (in "unpacked", without file sums) are
	// not used.
	unpackedDir = "unpacked-v2"
)

// ErrCacheCorrupt is wrapped by errors about a file of an unpacked package
// in the cache whose content is not what was unpacked from the verified
// package (truncated, changed, missing).
var ErrCacheCorrupt = errors.New("unpacked package in the cache is corrupt")

type unpackedFile struct {
	size int64
	sum  string
}

// unpacked is a verified package unpacked in the cache. Every regular
// file's sha256 was recorded as it was unpacked; readFile checks it on
// every read, so a truncated or altered cache file never reaches an image.
type unpacked struct {
	dir   string
	sum   string // of the .deb
	files map[string]unpackedFile
}

// abs is the path on disk of rel ('/'-separated, relative to the package
// root).
func (u *unpacked) abs(rel string) string { return filepath.Join(u.dir, filepath.FromSlash(rel)) }

// readFile returns the content of the regular file rel, checked against
// the sha256 and size recorded when it was unpacked. A file the package
// does not hold is fs.ErrNotExist; one whose content differs is
// ErrCacheCorrupt.
func (u *unpacked) readFile(rel string) ([]byte, error) {
	want, ok := u.files[rel]
	if !ok {
		return nil, fmt.Errorf("%s: %w", rel, fs.ErrNotExist)
	}
	b, err := os.ReadFile(u.abs(rel))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrCacheCorrupt, u.abs(rel), err)
	}
	sum := sha256.Sum256(b)
	if got := hex.EncodeToString(sum[:]); int64(len(b)) != want.size || got != want.sum {
		return nil, fmt.Errorf("%w: %s has %d bytes with sha256 %s, unpacked were %d bytes with sha256 %s",
			ErrCacheCorrupt, u.abs(rel), len(b), got, want.size, want.sum)
	}
	return b, nil
}

// checkSize is a cheap check of a file read only in part (a module's
// .modinfo): it exists with the size it was unpacked with.
func (u *unpacked) checkSize(rel string) error {
	want, ok := u.files[rel]
	if !ok {
		return fmt.Errorf("%s: %w", rel, fs.ErrNotExist)
	}
	st, err := os.Stat(u.abs(rel))
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrCacheCorrupt, u.abs(rel), err)
	}
	if st.Size() != want.size {
		return fmt.Errorf("%w: %s has %d bytes, unpacked were %d", ErrCacheCorrupt, u.abs(rel), st.Size(), want.size)
	}
	return nil
}

// names lists the regular files, sorted.
func (u *unpacked) names() []string {
	n := make([]string, 0, len(u.files))
	for k := range u.files {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}

// withUnpacked fetches pkg (verified against its pinned sha256), unpacks it
// into the cache (only paths with one of the prefixes) or reuses the
// unpack, and calls use. When use meets a corrupt cache file
// (ErrCacheCorrupt), the unpack is discarded and made again from the
// verified package, once. Errors of the fetch and the unpack are prefixed
// with what (when not empty); use's errors are returned as they are.
func withUnpacked(ctx context.Context, what string, pkg board.Kernel, cache string, p *progress, prefixes []string, use func(*unpacked) error) error {
	wrap := func(err error) error {
		if what == "" {
			return err
		}
		return fmt.Errorf("%s: %w", what, err)
	}
	for attempt := 0; ; attempt++ {
		deb, err := fetchPackage(ctx, pkg, cache, p)
		if err != nil {
			return wrap(err)
		}
		u, err := unpackCached(deb, pkg.SHA256, cache, prefixes)
		if err != nil {
			return wrap(err)
		}
		err = use(u)
		if attempt > 0 || !errors.Is(err, ErrCacheCorrupt) {
			return err
		}
		p.step("unpack", "%s %s: %v: unpacking the package again", pkg.Package, pkg.Version, err)
		if err := discardUnpacked(u.dir); err != nil {
			return wrap(err)
		}
	}
}

// unpackCached returns <cache>/unpacked-v2/<sha256>/, the verified .deb at
// debPath unpacked (only paths with one of the prefixes). Unpacking the
// kernel package's xz data in Go takes most of a minute, so the result is
// kept: it is keyed by the package's verified sha256, its listing records
// every file's sha256 (checked on every read, see unpacked.readFile), and
// it is renamed into place only when complete. A directory without a
// readable listing (damaged) is discarded and unpacked again.
//
// The listing guards against damage (a build host that crashed, a full
// disk, a stray edit), not against someone who may write to the cache: he
// could rewrite the listing too. So an unpack directory, its parent or
// its listing that another user owns or may write is refused
// (ErrCacheUnsafe), never used; the builder's own user is trusted.
func unpackCached(debPath, sum, cache string, prefixes []string) (*unpacked, error) {
	dir := filepath.Join(cache, unpackedDir, sum)
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return nil, err
	}
	if err := checkPrivate(filepath.Dir(dir)); err != nil {
		return nil, err
	}
	u, err := readUnpacked(dir, sum)
	if err == nil {
		return u, nil
	}
	if errors.Is(err, ErrCacheUnsafe) {
		return nil, err
	}
	if !errors.Is(err, fs.ErrNotExist) {
		if err := discardUnpacked(dir); err != nil {
			return nil, err
		}
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), sum[:12]+".tmp-*")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp) // gone after a successful rename
	keep := func(name string) bool {
		for _, p := range prefixes {
			if name == strings.TrimSuffix(p, "/") || strings.HasPrefix(name, p) {
				return true
			}
		}
		return false
	}
	files := map[string]unpackedFile{}
	if err := extractDeb(debPath, sum, tmp, keep, files); err != nil {
		return nil, err
	}
	u = &unpacked{dir: dir, sum: sum, files: files}
	var listing bytes.Buffer
	listing.WriteString(unpackedHeader + sum + "\n")
	for _, n := range u.names() {
		if strings.ContainsAny(n, "\n\r") {
			return nil, fmt.Errorf("unpack %s: file name %q has a line break", debPath, n)
		}
		fmt.Fprintf(&listing, "%s %d %s\n", files[n].sum, files[n].size, n)
	}
	if err := os.WriteFile(filepath.Join(tmp, unpackedComplete), listing.Bytes(), 0o644); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, dir); err != nil {
		// Another build may have unpacked the same package meanwhile.
		if u, serr := readUnpacked(dir, sum); serr == nil {
			return u, nil
		}
		return nil, fmt.Errorf("unpack %s: %w", debPath, err)
	}
	return u, nil
}

// readUnpacked reads the listing of an unpacked package directory. A
// missing directory is fs.ErrNotExist; a directory without a whole
// listing for sum is ErrCacheCorrupt.
func readUnpacked(dir, sum string) (*unpacked, error) {
	if _, err := os.Lstat(dir); err != nil {
		return nil, err
	}
	listing := filepath.Join(dir, unpackedComplete)
	for _, p := range []string{dir, listing} {
		if err := checkPrivate(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	b, err := os.ReadFile(listing)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrCacheCorrupt, dir, err)
	}
	bad := func(why string) error {
		return fmt.Errorf("%w: %s: listing %s: %s", ErrCacheCorrupt, dir, unpackedComplete, why)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	if !sc.Scan() || sc.Text() != unpackedHeader+sum {
		return nil, bad("not a listing of this package")
	}
	u := &unpacked{dir: dir, sum: sum, files: map[string]unpackedFile{}}
	for sc.Scan() {
		f := strings.SplitN(sc.Text(), " ", 3)
		if len(f) != 3 || len(f[0]) != 64 {
			return nil, bad(fmt.Sprintf("bad line %q", sc.Text()))
		}
		size, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil || size < 0 {
			return nil, bad(fmt.Sprintf("bad size in %q", sc.Text()))
		}
		u.files[f[2]] = unpackedFile{size: size, sum: f[0]}
	}
	if err := sc.Err(); err != nil {
		return nil, bad(err.Error())
	}
	if !bytes.HasSuffix(b, []byte("\n")) {
		return nil, bad("cut short")
	}
	return u, nil
}

// ErrCacheUnsafe is wrapped by errors about an unpack directory (or its
// listing) that someone other than the building user (or root) owns or
// may write: its listing vouches for the files only as long as no one
// else can rewrite both.
var ErrCacheUnsafe = errors.New("cache writable by others")

// checkPrivate refuses a cache directory or listing that is a symlink,
// belongs to another user than the builder's (or root), or is group or
// world writable. The builder itself creates them 0755 and 0644.
func checkPrivate(p string) error {
	st, err := os.Lstat(p)
	if err != nil {
		return err
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	switch {
	case st.Mode()&fs.ModeSymlink != 0:
		return fmt.Errorf("%w: %s is a symlink: remove it", ErrCacheUnsafe, p)
	case !ok:
		return fmt.Errorf("%w: %s: no owner", ErrCacheUnsafe, p)
	case int(sys.Uid) != os.Geteuid() && sys.Uid != 0:
		return fmt.Errorf("%w: %s belongs to uid %d, the builder runs as uid %d: another user could have altered an unpack; remove it or set OTGATE_CACHE to a directory of your own",
			ErrCacheUnsafe, p, sys.Uid, os.Geteuid())
	case st.Mode().Perm()&0o022 != 0:
		return fmt.Errorf("%w: %s has mode %04o (group or world writable): another user could have altered an unpack; remove it or chmod go-w it",
			ErrCacheUnsafe, p, uint32(st.Mode().Perm()))
	}
	return nil
}

// discardUnpacked moves a damaged unpacked directory out of the way (so a
// concurrent build never sees it half removed under its name) and removes
// it.
func discardUnpacked(dir string) error {
	trash, err := os.MkdirTemp(filepath.Dir(dir), filepath.Base(dir)+".bad-*")
	if err != nil {
		return err
	}
	if err := os.Rename(dir, filepath.Join(trash, "old")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		os.Remove(trash)
		return fmt.Errorf("discard damaged unpack %s: %w", dir, err)
	}
	return os.RemoveAll(trash)
}
