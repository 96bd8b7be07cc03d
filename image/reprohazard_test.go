package image

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// The environment of the user who builds does not reach a binary: a
// build with GOFLAGS (an -X that would stamp the binary), CGO_ENABLED=1,
// another GOAMD64 level, GOEXPERIMENT, GOFIPS140, SOURCE_DATE_EPOCH, a
// locale and a time zone gives the same bytes as a clean one.
func TestBuildEnvironmentDoesNotLeak(t *testing.T) {
	dir := goModule(t, "", map[string]string{
		"main.go": "package main\n\nvar stamp = \"clean\"\n\nfunc main() { println(stamp) }\n",
	})
	build := func(name string) []byte {
		t.Helper()
		env, err := goEnv(testBoard(t, "qemu-x86_64"))
		if err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(t.TempDir(), name)
		if err := goBuild(context.Background(), dir, env, ".", out); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	clean := build("clean")
	for k, v := range map[string]string{
		"GOFLAGS":           "-ldflags=-X=main.stamp=leaked",
		"CGO_ENABLED":       "1",
		"GOAMD64":           "v3",
		"GOEXPERIMENT":      "nogreenteagc",
		"GOFIPS140":         "latest",
		"SOURCE_DATE_EPOCH": "1",
		"LC_ALL":            "de_DE.UTF-8",
		"TZ":                "America/New_York",
	} {
		t.Setenv(k, v)
	}
	if dirty := build("dirty"); !bytes.Equal(clean, dirty) {
		t.Errorf("a build with the caller's GOFLAGS, CGO_ENABLED, GOAMD64, GOEXPERIMENT... differs from a clean one (%d vs %d bytes)", len(clean), len(dirty))
	}
}

// The umask and file modes of the checkout do not reach the initramfs:
// rootfs files are 0644, or 0755 when any execute bit is set, whatever
// the checkout gave them.
func TestRootfsModesDoNotDependOnTheCheckout(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	write := func(mask int, fileMode, exeMode os.FileMode) []byte {
		t.Helper()
		syscall.Umask(mask)
		dir := t.TempDir()
		if err := os.MkdirAll(filepath.Join(dir, "etc", "otgate"), 0o777); err != nil {
			t.Fatal(err)
		}
		for name, mode := range map[string]os.FileMode{"etc/passwd": fileMode, "etc/otgate/run": exeMode} {
			if err := os.WriteFile(filepath.Join(dir, filepath.FromSlash(name)), []byte(name), mode); err != nil {
				t.Fatal(err)
			}
		}
		tree := newFileTree()
		if err := tree.addDir("/", dir); err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		if err := writeInitramfs(&out, tree, compressZstd); err != nil {
			t.Fatal(err)
		}
		return out.Bytes()
	}
	a := write(0o022, 0o644, 0o755)
	for _, c := range []struct {
		mask          int
		file, exeMode os.FileMode
	}{{0o077, 0o600, 0o700}, {0o002, 0o664, 0o775}, {0o000, 0o666, 0o777}, {0o027, 0o640, 0o710}} {
		if b := write(c.mask, c.file, c.exeMode); !bytes.Equal(a, b) {
			t.Errorf("umask %03o, files %o/%o: initramfs differs from umask 022's", c.mask, c.file, c.exeMode)
		}
	}
}
