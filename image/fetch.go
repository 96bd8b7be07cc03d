package image

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/otgate/otgate/board"
)

// ErrChecksum is wrapped by errors about a package whose sha256 differs
// from the one pinned in the board definition.
var ErrChecksum = errors.New("sha256 mismatch")

// fetchPackage returns the path of the verified .deb of pkg in
// <cache>/debs/, downloading it from pkg.URLs() in order unless a cached
// copy with the pinned sha256 exists (hashed again at every use). A cached
// copy with another sum, or that is not a regular file, is removed and
// downloaded again; a download with another sum is removed and
// is an error naming package, expected and actual sum.
func fetchPackage(ctx context.Context, pkg board.Kernel, cache string, p *progress) (string, error) {
	what := pkg.Package + " " + pkg.Version
	if len(pkg.SHA256) != 64 {
		return "", fmt.Errorf("package %s: pinned sha256 %q is not 64 hex digits", what, pkg.SHA256)
	}
	dir := filepath.Join(cache, "debs")
	dst := filepath.Join(dir, pkg.FileName())
	// Only a regular file is read: a fifo would block the build for
	// ever, a directory or a link is not what the builder writes.
	if st, err := os.Lstat(dst); err == nil && !st.Mode().IsRegular() {
		p.step("fetch", "%s: cached copy %s is not a regular file (%s): removing it", what, dst, st.Mode().Type())
		if err := os.RemoveAll(dst); err != nil {
			return "", fmt.Errorf("package %s: remove bad cached copy: %w", what, err)
		}
	}
	if sum, err := fileSHA256(dst); err == nil {
		if sum == pkg.SHA256 {
			p.step("fetch", "%s: cached copy verified", what)
			return dst, nil
		}
		p.step("fetch", "%s: cached copy %s has sha256 %s, want %s: removing it", what, dst, sum, pkg.SHA256)
		if err := os.Remove(dst); err != nil {
			return "", fmt.Errorf("package %s: remove bad cached copy: %w", what, err)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("package %s: cache: %w", what, err)
	}
	urls := pkg.URLs()
	if len(urls) == 0 {
		return "", fmt.Errorf("package %s: no download address (board definition has no archives)", what)
	}
	var errs []error
	for _, u := range urls {
		err := download(ctx, u, dst, pkg.SHA256)
		if err == nil {
			p.step("fetch", "%s: downloaded from %s, verified", what, u)
			return dst, nil
		}
		if errors.Is(err, ErrChecksum) {
			// A wrong package is not a network hiccup: stop here.
			return "", fmt.Errorf("package %s from %s: %w", what, u, err)
		}
		errs = append(errs, fmt.Errorf("%s: %w", u, err))
	}
	return "", fmt.Errorf("package %s: download failed: %w", what, errors.Join(errs...))
}

// A download that receives nothing for downloadStall (no answer, or a
// transfer that stopped) is abandoned, and the next archive is tried: a
// stalled mirror must not hang a build for ever. No pinned package is
// near maxPackageSize; a server that sends more is not filling the disk.
var (
	downloadStall  = time.Minute
	maxPackageSize = int64(1 << 30)
)

// download fetches url into dst via a temporary file, which it renames into
// place only when the content has sha256 want.
func download(ctx context.Context, url, dst, want string) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stalled := fmt.Errorf("no data for %s", downloadStall)
	watchdog := time.AfterFunc(downloadStall, func() { cancel(stalled) })
	defer watchdog.Stop()
	// The cause (a stall) rather than "context canceled".
	cause := func(err error) error {
		if c := context.Cause(ctx); c != nil && ctx.Err() != nil {
			return c
		}
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return cause(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %s", resp.Status)
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), filepath.Base(dst)+".part-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	h := sha256.New()
	body := &progressReader{r: io.LimitReader(resp.Body, maxPackageSize+1), progress: func() { watchdog.Reset(downloadStall) }}
	n, err := io.Copy(io.MultiWriter(tmp, h), body)
	if err != nil {
		tmp.Close()
		return cause(err)
	}
	if n > maxPackageSize {
		tmp.Close()
		return fmt.Errorf("more than %d bytes: not a package", maxPackageSize)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); !strings.EqualFold(got, want) {
		return fmt.Errorf("%w: expected %s, got %s (download removed)", ErrChecksum, want, got)
	}
	return os.Rename(tmp.Name(), dst)
}

// progressReader calls progress after every read that returned data.
type progressReader struct {
	r        io.Reader
	progress func()
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		p.progress()
	}
	return n, err
}

// fileSHA256 is the hex sha256 of the file at path.
func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
