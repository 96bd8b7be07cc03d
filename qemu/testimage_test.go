package qemu

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/blakesmith/ar"
	"github.com/otgate/otgate/board"
	"github.com/u-root/u-root/pkg/cpio"
	"github.com/ulikunitz/xz"
)

// The harness tests boot their own tiny PID 1 (internal/testinit) with the
// board's real Debian kernel, taken from the kernel package the image
// builder caches, so they do not depend on image/ or init/.

// testModules are loaded by testinit in this order (dependencies first);
// modules a kernel does not ship as .ko (built in) are skipped.
var testModules = []string{
	"virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio_pci",
	"failover", "net_failover", "virtio_net", "virtio_blk", "virtio-rng",
	"tpm_tis_core", "tpm_tis", "watchdog", "i6300esb", "button", "evdev",
}

// debCache is where the image builder keeps downloaded kernel packages.
func debCache() string {
	if d := os.Getenv("OTGATE_DEB_CACHE"); d != "" {
		return d
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "otgate", "debs")
}

var extractMu sync.Mutex

// testKernel returns the board's kernel image and a directory of the test
// modules, extracted once from the verified kernel package into a cache.
func testKernel(t testing.TB, b *board.Board) (kernel, modDir string) {
	t.Helper()
	extractMu.Lock()
	defer extractMu.Unlock()
	deb := filepath.Join(debCache(), b.Kernel.FileName())
	home, _ := os.UserHomeDir()
	// The cache key covers the module list: adding a module re-extracts.
	sum := sha256.Sum256([]byte(strings.Join(testModules, ",")))
	dir := filepath.Join(home, ".cache", "otgate", "qemu-test",
		strings.TrimSuffix(b.Kernel.FileName(), ".deb")+"-"+hex.EncodeToString(sum[:4]))
	kernel, modDir = filepath.Join(dir, "kernel"), filepath.Join(dir, "modules")
	if _, err := os.Stat(kernel); err == nil {
		return kernel, modDir
	}
	if _, err := os.Stat(deb); err != nil {
		t.Skipf("kernel package for board %s not cached (%v): run `make image BOARD=%s` or set OTGATE_DEB_CACHE", b.Name, err, b.Name)
	}
	if err := extractKernel(deb, b.Kernel, dir); err != nil {
		t.Fatal(err)
	}
	return kernel, modDir
}

func extractKernel(deb string, k board.Kernel, dir string) error {
	data, err := os.ReadFile(deb)
	if err != nil {
		return err
	}
	if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != k.SHA256 {
		return fmt.Errorf("%s: sha256 %x, board pins %s", deb, sum, k.SHA256)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), ".extract-")
	if err != nil {
		if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
			return err
		}
		if tmp, err = os.MkdirTemp(filepath.Dir(dir), ".extract-"); err != nil {
			return err
		}
	}
	defer os.RemoveAll(tmp)
	if err := os.Mkdir(filepath.Join(tmp, "modules"), 0o755); err != nil {
		return err
	}
	want := map[string]bool{}
	for _, m := range testModules {
		want[m+".ko"] = true
	}
	arr := ar.NewReader(bytes.NewReader(data))
	for {
		h, err := arr.Next()
		if err != nil {
			return fmt.Errorf("%s: no data.tar.xz member: %w", deb, err)
		}
		if !strings.HasPrefix(h.Name, "data.tar.xz") {
			continue
		}
		xr, err := xz.NewReader(arr)
		if err != nil {
			return fmt.Errorf("%s: data.tar.xz: %w", deb, err)
		}
		tr := tar.NewReader(xr)
		gotKernel := false
		for {
			th, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				return fmt.Errorf("%s: data.tar.xz: %w", deb, err)
			}
			name := strings.TrimPrefix(th.Name, "./")
			var dst string
			switch {
			case name == k.Image:
				dst, gotKernel = filepath.Join(tmp, "kernel"), true
			case strings.HasPrefix(name, "lib/modules/"+k.Release+"/") && want[path.Base(name)]:
				dst = filepath.Join(tmp, "modules", path.Base(name))
			default:
				continue
			}
			f, err := os.Create(dst)
			if err != nil {
				return err
			}
			if _, err := io.Copy(f, tr); err != nil {
				f.Close()
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
		}
		if !gotKernel {
			return fmt.Errorf("%s: no %s in the package", deb, k.Image)
		}
		if err := os.Rename(tmp, dir); err != nil {
			// Another test process extracted it first (two runs sharing
			// the cache): theirs is as good as ours.
			if _, serr := os.Stat(filepath.Join(dir, "kernel")); serr == nil {
				return nil
			}
			return err
		}
		return nil
	}
}

var (
	initMu    sync.Mutex
	initBuilt = map[string]string{}
)

// testInitramfs builds internal/testinit for the board's architecture and
// packs it with the test modules into a newc cpio archive.
func testInitramfs(t testing.TB, b *board.Board, modDir string) string {
	t.Helper()
	initMu.Lock()
	defer initMu.Unlock()
	if p, ok := initBuilt[b.Name]; ok {
		return p
	}
	dir, err := os.MkdirTemp("", "otgate-testinit-")
	if err != nil {
		t.Fatal(err)
	}
	// Shared by every test in this binary: removed when the binary ends.
	testBinaryCleanup = append(testBinaryCleanup, func() { os.RemoveAll(dir) })
	bin := filepath.Join(dir, "init")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "./internal/testinit")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+b.Arch)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build testinit for %s: %v\n%s", b.Arch, err, out)
	}
	initBytes, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	recs := []cpio.Record{
		cpio.Directory(".", 0o755),
		cpio.Directory("dev", 0o755),
		cpio.CharDev("dev/console", 0o600, 5, 1),
		cpio.StaticRecord(initBytes, cpio.Info{Name: "init", Mode: cpio.S_IFREG | 0o755}),
		cpio.Directory("modules", 0o755),
	}
	var order []string
	for _, m := range testModules {
		data, err := os.ReadFile(filepath.Join(modDir, m+".ko"))
		if err != nil {
			continue // built into this kernel
		}
		order = append(order, m+".ko")
		recs = append(recs, cpio.StaticRecord(data, cpio.Info{Name: "modules/" + m + ".ko", Mode: cpio.S_IFREG | 0o644}))
	}
	recs = append(recs, cpio.StaticFile("modules/order", strings.Join(order, "\n")+"\n", 0o644))
	cpio.MakeAllReproducible(recs)
	out := filepath.Join(dir, "initramfs.cpio")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	w := cpio.Newc.Writer(f)
	if err := cpio.WriteRecords(w, recs); err != nil {
		t.Fatal(err)
	}
	if err := cpio.WriteTrailer(w); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	initBuilt[b.Name] = out
	return out
}

var testBinaryCleanup []func()

func TestMain(m *testing.M) {
	code := m.Run()
	for _, f := range testBinaryCleanup {
		f()
	}
	os.Exit(code)
}

// testImage returns WithKernel for the board's kernel and the test init.
func testImage(t testing.TB, b *board.Board) Option {
	t.Helper()
	kernel, modDir := testKernel(t, b)
	return WithKernel(kernel, testInitramfs(t, b, modDir))
}

func requireQEMU(t testing.TB, b *board.Board, bins ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("QEMU harness tests run as root (taps, namespaces)")
	}
	for _, bin := range append([]string{b.QEMU.Binary}, bins...) {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("needs %s on PATH: %v", bin, err)
		}
	}
}

func mustBoard(t testing.TB, name string) *board.Board {
	t.Helper()
	b, err := board.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
