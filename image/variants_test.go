package image

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/otgate/otgate/internal/bootcfg"
	"github.com/u-root/u-root/pkg/cpio"
)

// buildRecords builds the real qemu-x86_64 image (./init, ./cmd/otgate,
// the production service table) with opts and returns its initramfs
// records by name and its boot config.
func buildRecords(t *testing.T, opts ...Option) (map[string]cpio.Record, *bootcfg.Config) {
	t.Helper()
	b := testBoard(t, "qemu-x86_64")
	out := t.TempDir()
	all := append([]Option{WithSourceDir(sourceRoot(t)), WithCacheDir(cacheDir(t)), WithOutDir(out)}, opts...)
	m, err := Build(context.Background(), b, all...)
	if err != nil {
		t.Fatal(err)
	}
	// The manifest on disk names the variant as the build does.
	if onDisk, err := ReadManifest(filepath.Join(out, b.Name)); err != nil || onDisk.Variant != m.Variant || onDisk.Debug != m.Debug {
		t.Fatalf("manifest on disk %+v (%v), want variant %q", onDisk, err, m.Variant)
	}
	if m.Debug != (m.Variant == "debug") || m.Debug == (m.Variant == Production) {
		t.Errorf("manifest: debug %v, variant %q", m.Debug, m.Variant)
	}
	raw, err := os.ReadFile(filepath.Join(out, b.Name, InitramfsFile))
	if err != nil {
		t.Fatal(err)
	}
	recs, err := readInitramfs(raw)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]cpio.Record{}
	for _, r := range recs {
		byName[r.Name] = r
	}
	bc, ok := byName[strings.TrimPrefix(bootcfg.Path, "/")]
	if !ok {
		t.Fatalf("initramfs has no %s", bootcfg.Path)
	}
	data := make([]byte, bc.FileSize)
	if _, err := bc.ReadAt(data, 0); err != nil {
		t.Fatal(err)
	}
	cfg, err := bootcfg.Unmarshal(data)
	if err != nil {
		t.Fatal(err)
	}
	return byName, cfg
}

func recordData(t *testing.T, r cpio.Record) string {
	t.Helper()
	data := make([]byte, r.FileSize)
	if _, err := r.ReadAt(data, 0); err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// testOnly says which initramfs paths only test and debug images may hold.
func testOnly(name string) string {
	switch {
	case strings.Contains(name, "testsvc"), strings.Contains(name, "testapply"):
		return "a test-only service binary"
	case "/"+name == TestSiteFile:
		return "the test site file"
	case name == strings.TrimPrefix(debugBusybox, "/"):
		return "the debug busybox"
	case isDebugCommand("/" + name):
		return "a debug shell command"
	}
	return ""
}

// The production image holds exactly the production service table: no
// test-only service, binary, site file or hook, and no shell. The debug
// variant (make image DEBUG=1) adds u-root's shell and core commands and
// nothing else of the test images.
func TestProductionAndDebugImages(t *testing.T) {
	var want []string
	for _, r := range ProductionServices {
		want = append(want, r.Service.Name)
	}
	names := func(cfg *bootcfg.Config) []string {
		var n []string
		for _, s := range cfg.Services {
			n = append(n, s.Name)
		}
		return n
	}

	prod, cfg := buildRecords(t)
	for name := range prod {
		if what := testOnly(name); what != "" {
			t.Errorf("production image holds %s: /%s", what, name)
		}
	}
	if cfg.TestHooks || cfg.Debug || !slices.Equal(names(cfg), want) {
		t.Errorf("production boot config: test hooks %v, debug %v, services %v; want none, none, %v",
			cfg.TestHooks, cfg.Debug, names(cfg), want)
	}

	dbg, cfg := buildRecords(t, WithDebug(true))
	bb, ok := dbg[strings.TrimPrefix(debugBusybox, "/")]
	if !ok || bb.Mode != cpio.S_IFREG|0o755 {
		t.Fatalf("debug image: %s missing or mode %o", debugBusybox, bb.Mode)
	}
	for _, c := range DebugCommands {
		r, ok := dbg["bin/"+c]
		if !ok || r.Mode&cpio.S_IFMT != cpio.S_IFLNK || recordData(t, r) != "bb" {
			t.Errorf("debug image: /bin/%s missing or not a link to bb (%+v)", c, r.Info)
		}
	}
	if !slices.Contains(DebugCommands, "gosh") {
		t.Errorf("debug commands %v lack the shell", DebugCommands)
	}
	for name := range dbg {
		if what := testOnly(name); what != "" && !strings.HasPrefix(what, "the debug") && !strings.HasPrefix(what, "a debug") {
			t.Errorf("debug image holds %s: /%s", what, name)
		}
	}
	if cfg.TestHooks || !cfg.Debug || !slices.Equal(names(cfg), want) {
		t.Errorf("debug boot config: test hooks %v, debug %v, services %v; want none, debug, %v",
			cfg.TestHooks, cfg.Debug, names(cfg), want)
	}
}
