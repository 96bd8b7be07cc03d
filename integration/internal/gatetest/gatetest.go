// Package gatetest is the small helper the QEMU integration tests share:
// it builds a board's test image once per test binary (with the test-only
// services) and tells whether the machine can run the tests at all.
package gatetest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/otgate/otgate/board"
	"github.com/otgate/otgate/image"
)

var (
	mu     sync.Mutex
	built  = map[string]string{}
	errors = map[string]error{}
)

// RepoRoot returns the directory holding go.mod.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("gatetest: no go.mod above the working directory")
		}
		dir = parent
	}
}

// Require skips the test when it cannot run here: not root, or a binary
// the QEMU tests need is missing (make test installs them all).
func Require(t testing.TB, b *board.Board) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("QEMU integration tests need root (network namespaces, taps)")
	}
	for _, bin := range []string{b.QEMU.Binary, "swtpm"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not installed (make test installs it)", bin)
		}
	}
}

// Image builds the test image of the named board (test services included)
// into out/test/<board> once per test binary and returns the board and the
// image directory.
func Image(t testing.TB, name string) (*board.Board, string) {
	t.Helper()
	b, err := board.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	Require(t, b)
	mu.Lock()
	defer mu.Unlock()
	if dir, ok := built[name]; ok {
		return b, dir
	}
	if err, ok := errors[name]; ok {
		t.Fatalf("test image %s: %v", name, err)
	}
	root := RepoRoot(t)
	out := filepath.Join(root, "out", "test")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	_, err = image.Build(ctx, b,
		image.WithSourceDir(root),
		image.WithOutDir(out),
		image.WithTestServices(true),
		image.WithLog(testWriter{t}),
	)
	if err != nil {
		errors[name] = err
		t.Fatalf("test image %s: %v", name, err)
	}
	dir := filepath.Join(out, name)
	t.Logf("test image %s built in %s: %s", name, time.Since(start).Round(time.Millisecond), dir)
	built[name] = dir
	return b, dir
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

// Context returns a context bounded by d and cancelled at test end.
func Context(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// Variant builds the named board's image with extra options (e.g.
// image.WithDemo) into out/test-<variant>/<board> once per test binary and
// returns the board and the image directory. Variants do not share the
// plain test image's directory, so test binaries of other packages
// building that one at the same time are not disturbed.
func Variant(t testing.TB, name, variant string, opts ...image.Option) (*board.Board, string) {
	t.Helper()
	b, err := board.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	Require(t, b)
	mu.Lock()
	defer mu.Unlock()
	key := name + "/" + variant
	if dir, ok := built[key]; ok {
		return b, dir
	}
	if err, ok := errors[key]; ok {
		t.Fatalf("image %s (%s): %v", name, variant, err)
	}
	root := RepoRoot(t)
	out := filepath.Join(root, "out", "test-"+variant)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	all := append([]image.Option{image.WithSourceDir(root), image.WithOutDir(out), image.WithLog(testWriter{t})}, opts...)
	if _, err := image.Build(ctx, b, all...); err != nil {
		errors[key] = err
		t.Fatalf("image %s (%s): %v", name, variant, err)
	}
	dir := filepath.Join(out, name)
	t.Logf("image %s (%s) built in %s: %s", name, variant, time.Since(start).Round(time.Millisecond), dir)
	built[key] = dir
	return b, dir
}
