package image

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A mirror that does not answer, or stops sending, is abandoned after
// downloadStall and the next archive is tried; a body larger than any
// package is not written to the end. Nothing is left in the cache.
func TestStalledOrEndlessDownloadIsAbandoned(t *testing.T) {
	defer func(d time.Duration, m int64) { downloadStall, maxPackageSize = d, m }(downloadStall, maxPackageSize)
	downloadStall, maxPackageSize = 300*time.Millisecond, 1<<20
	release := make(chan struct{})
	wait := func(r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}
	silent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { wait(r) }))
	defer silent.Close()
	stopped := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000000")
		w.Write(make([]byte, 1000))
		w.(http.Flusher).Flush()
		wait(r)
	}))
	defer stopped.Close()
	endless := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 64<<10)
		for r.Context().Err() == nil {
			if _, err := w.Write(buf); err != nil {
				return
			}
		}
	}))
	defer endless.Close()
	defer close(release) // before the servers close

	b := testBoard(t, "qemu-x86_64")
	b.Kernel.Archives = []string{silent.URL, stopped.URL, endless.URL}
	cache := t.TempDir()
	done := make(chan error, 1)
	go func() {
		_, err := fetchPackage(context.Background(), b.Kernel, cache, newProgress(nil))
		done <- err
	}()
	var err error
	select {
	case err = <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("fetch from stalled mirrors still waiting after 20s")
	}
	t.Logf("error: %v", err)
	if err == nil {
		t.Fatal("fetch succeeded")
	}
	for _, want := range []string{silent.URL + "/", "no data for 300ms", stopped.URL + "/", endless.URL + "/", "more than 1048576 bytes"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %q", want)
		}
	}
	ents, _ := os.ReadDir(filepath.Join(cache, "debs"))
	for _, e := range ents {
		t.Errorf("abandoned download left %s in the cache", e.Name())
	}
}

// A cache entry that is not a regular file (a fifo would block the
// read for ever, a directory or a link is not what the builder writes)
// is never used: it is removed and the package fetched again (here from a
// mirror serving the wrong bytes, so the fetch ends in ErrChecksum).
func TestCachedPackageNotARegularFile(t *testing.T) {
	b := testBoard(t, "qemu-x86_64")
	b.Kernel.Archives = []string{corruptServer(t).URL}
	good := filepath.Join(t.TempDir(), "elsewhere.deb")
	if err := os.WriteFile(good, []byte("not the package"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		make func(p string) error
	}{
		{"fifo", func(p string) error { return syscall.Mkfifo(p, 0o644) }},
		{"directory", func(p string) error {
			if err := os.Mkdir(p, 0o755); err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(p, "x"), []byte("x"), 0o644)
		}},
		{"symlink", func(p string) error { return os.Symlink(good, p) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cache := t.TempDir()
			cached := filepath.Join(cache, "debs", b.Kernel.FileName())
			os.MkdirAll(filepath.Dir(cached), 0o755)
			if err := tc.make(cached); err != nil {
				t.Fatal(err)
			}
			var log strings.Builder
			done := make(chan error, 1)
			go func() {
				_, err := fetchPackage(context.Background(), b.Kernel, cache, newProgress(&log))
				done <- err
			}()
			var err error
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				os.Remove(cached) // unblock the reader
				t.Fatal("fetch still reading the cached entry after 10s")
			}
			if !errors.Is(err, ErrChecksum) || !strings.Contains(log.String(), "not a regular file") {
				t.Fatalf("fetch over a cached %s: %v (log %q), want the entry removed and the package fetched again", tc.name, err, log.String())
			}
			if _, err := os.Lstat(cached); !os.IsNotExist(err) {
				t.Errorf("the cached %s is still there: %v", tc.name, err)
			}
			if b, err := os.ReadFile(good); err != nil || string(b) != "not the package" {
				t.Errorf("the link's target was touched: %q, %v", b, err)
			}
		})
	}
}
