package image

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
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
