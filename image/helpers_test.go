package image

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/otgate/otgate/board"
)

// standinInit is a tiny PID 1 for tests that must not depend on ./init:
// it prints a marker and powers the machine off.
const standinInit = `package main

import (
	"fmt"
	"syscall"
)

func main() {
	fmt.Println("otgate-image-test: stand-in init running")
	syscall.Sync()
	syscall.Reboot(syscall.LINUX_REBOOT_CMD_POWER_OFF)
}
`

// standin writes the stand-in main package and returns its file path.
func standin(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "main.go")
	if err := os.WriteFile(p, []byte(standinInit), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// sourceRoot is the otgate tree this package lives in.
func sourceRoot(t *testing.T) string {
	t.Helper()
	abs, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

// testBoard returns a copy of a defined board, safe to modify.
func testBoard(t *testing.T, name string) *board.Board {
	t.Helper()
	b, err := board.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	c := *b
	c.Modules = append([]string(nil), b.Modules...)
	return &c
}

// cacheDir is the shared download cache (real, verified packages).
func cacheDir(t *testing.T) string {
	t.Helper()
	c, err := newConfig([]Option{WithSourceDir(sourceRoot(t))})
	if err != nil {
		t.Fatal(err)
	}
	return c.cacheDir
}

// assertNoImage fails if out holds anything but nothing: no board
// directory and no leftover temporary directory.
func assertNoImage(t *testing.T, out string) {
	t.Helper()
	ents, err := os.ReadDir(out)
	if os.IsNotExist(err) {
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		t.Errorf("failed build left %s in %s", e.Name(), out)
	}
}

func needBinary(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Skipf("%s not installed (tools/install-deps.sh installs it)", name)
	}
}
