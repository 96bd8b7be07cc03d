package image

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/otgate/otgate/internal/bootcfg"
	"github.com/u-root/u-root/pkg/cpio"
)

// standinRows is a service table built from the stand-in main.
func standinRows(pkg string) []ServiceRow {
	return []ServiceRow{
		{Package: pkg, Service: bootcfg.Service{Name: "alpha", Binary: "/bin/otgate-alpha", Readiness: bootcfg.ReadyNotify, Critical: true}},
		{Package: pkg, Service: bootcfg.Service{Name: "beta", Binary: "/bin/otgate-alpha", Readiness: bootcfg.ReadyExit, DependsOn: []string{"alpha"}}},
	}
}

func TestInitramfsContents(t *testing.T) {
	b := testBoard(t, "qemu-x86_64")
	out := t.TempDir()
	pkg := standin(t)
	var log bytes.Buffer
	m, err := Build(context.Background(), b, WithSourceDir(sourceRoot(t)), WithCacheDir(cacheDir(t)), WithOutDir(out),
		WithLog(&log), withInitPackage(pkg), withServices(standinRows(pkg)), WithTestServices(true))
	t.Logf("build log:\n%s", log.String())
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(out, b.Name)
	raw, err := os.ReadFile(filepath.Join(dir, InitramfsFile))
	if err != nil {
		t.Fatal(err)
	}
	recs, err := readInitramfs(raw)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]cpio.Record{}
	var names []string
	for _, r := range recs {
		byName[r.Name] = r
		names = append(names, r.Name)
	}
	if !slices.IsSorted(names) {
		t.Errorf("records not in path order: %v", names)
	}
	mode := func(name string) uint64 { return byName[name].Mode }
	modDir := "lib/modules/" + b.Kernel.Release + "/"
	for name, want := range map[string]uint64{
		".":                    cpio.S_IFDIR | 0o755,
		"init":                 cpio.S_IFREG | 0o755,
		"bin/otgate":           cpio.S_IFREG | 0o755,
		"bin/otgate-alpha":     cpio.S_IFREG | 0o755,
		"dev/console":          cpio.S_IFCHR | 0o600,
		"etc/otgate/boot.cbor": cpio.S_IFREG | 0o644,
		"etc/passwd":           cpio.S_IFREG | 0o644,
		modDir + "modules.dep": cpio.S_IFREG | 0o644,
		modDir + "kernel/net/netfilter/nf_tables.ko": cpio.S_IFREG | 0o644,
		"lib":        cpio.S_IFDIR | 0o755,
		"etc/otgate": cpio.S_IFDIR | 0o755,
	} {
		if _, ok := byName[name]; !ok {
			t.Errorf("initramfs lacks %s", name)
		} else if mode(name) != want {
			t.Errorf("%s: mode %o, want %o", name, mode(name), want)
		}
	}
	if c := byName["dev/console"]; c.Rmajor != 5 || c.Rminor != 1 {
		t.Errorf("/dev/console is %d:%d, want 5:1", c.Rmajor, c.Rminor)
	}
	// Every parent directory has its own record, before its children.
	for i, n := range names {
		if d := filepath.Dir(n); d != "." {
			if j := slices.Index(names, d); j < 0 || j > i {
				t.Errorf("%s: parent %s missing or after it", n, d)
			}
		}
		if r := byName[n]; r.MTime != 0 || r.UID != 0 || r.GID != 0 {
			t.Errorf("%s: mtime %d uid %d gid %d, want zeros", n, r.MTime, r.UID, r.GID)
		}
	}
	// No debug shell in a production image.
	if _, ok := byName["bin/gosh"]; ok {
		t.Error("non-debug image has a shell")
	}

	// boot.cbor decodes with init's own loader and matches the board.
	cb := filepath.Join(t.TempDir(), "boot.cbor")
	data := make([]byte, byName["etc/otgate/boot.cbor"].FileSize)
	if _, err := byName["etc/otgate/boot.cbor"].ReadAt(data, 0); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(cb, data, 0o644)
	cfg, err := bootcfg.Load(cb)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Board != b.Name || cfg.KernelRelease != b.Kernel.Release || cfg.Hostname != "otgate" ||
		cfg.ImageID != m.ImageID || !cfg.TestHooks || cfg.Debug || cfg.Uplink != "eth0" ||
		!slices.Equal(cfg.Downlinks, []string{"eth1"}) || cfg.Watchdog.Device != b.Watchdog.Device ||
		cfg.CrashLoop.Restarts != 5 || cfg.Perm.Device != b.Perm.Device || cfg.TPM != b.TPM.Device {
		t.Errorf("boot config does not match the board: %+v", cfg)
	}
	if len(cfg.Services) != 2 || cfg.Services[1].DependsOn[0] != "alpha" {
		t.Errorf("services: %+v", cfg.Services)
	}
	// Every module init loads is in the archive, after its dependencies.
	for _, mod := range cfg.Modules {
		if _, ok := byName[modDir+mod]; !ok {
			t.Errorf("boot config loads %s, not in the initramfs", mod)
		}
	}
	if !slices.Contains(cfg.Modules, "kernel/net/netfilter/nf_tables.ko") {
		t.Errorf("modules %v lack nf_tables", cfg.Modules)
	}

	// The manifest names every artifact with its sum, and no absolute path.
	man, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{KernelFile, InitramfsFile} {
		if !slices.ContainsFunc(m.Artifacts, func(x Artifact) bool { return x.Name == a && len(x.SHA256) == 64 }) {
			t.Errorf("manifest lacks artifact %s", a)
		}
	}
	for _, bad := range []string{sourceRoot(t), out, os.TempDir() + "/"} {
		if strings.Contains(string(man), bad) {
			t.Errorf("manifest holds the path %s", bad)
		}
	}
	if !slices.ContainsFunc(m.Inputs.Sources, func(s SourceFile) bool { return s.Path == "cmd/otgate/main.go" }) {
		t.Errorf("manifest sources lack cmd/otgate/main.go: %v", m.Inputs.Sources)
	}
	if !slices.ContainsFunc(m.Inputs.Modules, func(x GoModule) bool { return x.Path == "github.com/fxamacker/cbor/v2" }) {
		t.Errorf("manifest modules lack fxamacker/cbor: %v", m.Inputs.Modules)
	}
	// The builder's own sources and modules are inputs too: they write
	// the cpio, the zstd stream and the disk image.
	for _, want := range []string{"image/build.go", "image/initramfs.go", "board/qemu_x86_64.go", "image/cmd/otgate-image/main.go"} {
		if !slices.ContainsFunc(m.Inputs.Sources, func(s SourceFile) bool { return s.Path == want && len(s.SHA256) == 64 }) {
			t.Errorf("manifest sources lack the builder's %s", want)
		}
	}
	for _, want := range []string{"github.com/diskfs/go-diskfs", "github.com/klauspost/compress", "github.com/u-root/u-root"} {
		if !slices.ContainsFunc(m.Inputs.BuilderModules, func(x GoModule) bool { return x.Path == want && x.Sum != "" }) {
			t.Errorf("manifest builder modules lack %s: %v", want, m.Inputs.BuilderModules)
		}
	}
	st, _ := os.Stat(filepath.Join(dir, KernelFile))
	t.Logf("kernel %d + initramfs %d = %.1f MiB", st.Size(), len(raw), float64(st.Size()+int64(len(raw)))/mib)

	// A second build replaces the first in place.
	m2, err := Build(context.Background(), b, WithSourceDir(sourceRoot(t)), WithCacheDir(cacheDir(t)), WithOutDir(out),
		withInitPackage(pkg), withServices(standinRows(pkg)))
	if err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(out)
	if len(ents) != 1 || m2.ImageID == m.ImageID {
		t.Errorf("after a rebuild: %d entries in out, image ids %s %s", len(ents), m.ImageID, m2.ImageID)
	}
}

// TestReproCheck builds the real qemu-x86_64 image (./init, ./cmd/otgate)
// twice from copies of the tree and compares the bytes.
func TestReproCheck(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the image twice")
	}
	var log bytes.Buffer
	m, err := ReproCheck(context.Background(), testBoard(t, "qemu-x86_64"), WithSourceDir(sourceRoot(t)),
		WithCacheDir(cacheDir(t)), WithLog(&log))
	t.Logf("%s", log.String())
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Artifacts) != 2 {
		t.Errorf("artifacts: %+v", m.Artifacts)
	}
}

func TestCompareDirsNamesDifference(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	for _, d := range []string{a, b} {
		os.WriteFile(filepath.Join(d, KernelFile), []byte("same"), 0o644)
	}
	os.WriteFile(filepath.Join(a, InitramfsFile), []byte("one"), 0o644)
	os.WriteFile(filepath.Join(b, InitramfsFile), []byte("two"), 0o644)
	err := compareDirs(a, b)
	if err == nil || !strings.Contains(err.Error(), "artifact initramfs differs") {
		t.Fatalf("compareDirs: %v", err)
	}
}
