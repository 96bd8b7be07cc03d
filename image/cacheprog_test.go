package image

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A cache program from the caller's environment (GOCACHEPROG) could serve
// any bytes as a build output: the image's go commands do not run it. The
// program here records that it ran and fails, so a go command that used
// it would fail the build; the build succeeds, the program never ran, and
// the log says once that GOCACHEPROG was ignored.
func TestGoCacheProgNotUsed(t *testing.T) {
	dir := t.TempDir()
	ran := filepath.Join(dir, "ran")
	prog := filepath.Join(dir, "cacheprog")
	if err := os.WriteFile(prog, []byte("#!/bin/sh\necho \"$0 $*\" >>"+ran+"\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("GOCACHEPROG", prog)

	b := testBoard(t, "qemu-x86_64")
	pkg := standin(t)
	var log bytes.Buffer
	_, err := Build(context.Background(), b, WithSourceDir(sourceRoot(t)), WithCacheDir(cacheDir(t)), WithOutDir(t.TempDir()),
		WithLog(&log), withInitPackage(pkg), withServices(standinRows(pkg)))
	if got, rerr := os.ReadFile(ran); !errors.Is(rerr, os.ErrNotExist) {
		t.Errorf("the build ran GOCACHEPROG (%v): %s", rerr, got)
	}
	if err != nil {
		t.Fatalf("build with GOCACHEPROG set: %v\nlog:\n%s", err, log.String())
	}
	if n := strings.Count(log.String(), "GOCACHEPROG="+prog+" ignored"); n != 1 {
		t.Errorf("the log says %d times that GOCACHEPROG was ignored, want once:\n%s", n, log.String())
	}
}
