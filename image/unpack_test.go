package image

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/otgate/otgate/board"
)

// smallCache is a private cache holding a copy of the (verified, small)
// systemd-boot package from the shared cache.
func smallCache(t *testing.T) (string, board.Kernel) {
	t.Helper()
	sb := board.SystemdBoot
	deb, err := fetchPackage(context.Background(), sb, cacheDir(t), newProgress(nil))
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(deb)
	if err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	os.MkdirAll(filepath.Join(cache, "debs"), 0o755)
	if err := os.WriteFile(filepath.Join(cache, "debs", sb.FileName()), data, 0o644); err != nil {
		t.Fatal(err)
	}
	return cache, sb
}

// A file of an unpacked package that changed in the cache (truncated by a
// crash, edited) never reaches an image: the read is refused, and the
// unpack is made again from the verified package.
func TestDamagedUnpackIsUnpackedAgain(t *testing.T) {
	cache, sb := smallCache(t)
	prefixes := []string{"usr/lib/systemd/boot/efi/"}
	read := func(t *testing.T) ([]byte, string) {
		t.Helper()
		var log bytes.Buffer
		var got []byte
		err := withUnpacked(context.Background(), "", sb, cache, newProgress(&log), prefixes, func(u *unpacked) error {
			var err error
			got, err = u.readFile(sb.Image)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return got, log.String()
	}
	good, _ := read(t)
	file := filepath.Join(cache, unpackedDir, sb.SHA256, filepath.FromSlash(sb.Image))

	for _, damage := range []struct {
		name string
		do   func() error
	}{
		{"truncated", func() error { return os.Truncate(file, 100) }},
		{"same size, other bytes", func() error {
			b := bytes.Repeat([]byte{0x90}, len(good))
			return os.WriteFile(file, b, 0o644)
		}},
		{"removed", func() error { return os.Remove(file) }},
		{"listing cut short", func() error {
			l := filepath.Join(cache, unpackedDir, sb.SHA256, unpackedComplete)
			b, err := os.ReadFile(l)
			if err != nil {
				return err
			}
			return os.WriteFile(l, b[:len(b)-5], 0o644)
		}},
	} {
		t.Run(damage.name, func(t *testing.T) {
			if err := damage.do(); err != nil {
				t.Fatal(err)
			}
			got, log := read(t)
			if !bytes.Equal(got, good) {
				t.Fatalf("read %d bytes from a damaged cache, want the %d unpacked from the package", len(got), len(good))
			}
			if damage.name != "listing cut short" && !strings.Contains(log, "unpacking the package again") {
				t.Errorf("progress does not say the unpack was redone:\n%s", log)
			}
			if b, err := os.ReadFile(file); err != nil || !bytes.Equal(b, good) {
				t.Errorf("cache not repaired: %v", err)
			}
			ents, _ := os.ReadDir(filepath.Join(cache, unpackedDir))
			if len(ents) != 1 {
				var names []string
				for _, e := range ents {
					names = append(names, e.Name())
				}
				t.Errorf("cache holds %v, want only the new unpack", names)
			}
		})
	}
}

// The package is hashed again as it is unpacked: a .deb that changed after
// fetchPackage verified it is not unpacked into the cache.
func TestUnpackChecksPackageSum(t *testing.T) {
	cache, sb := smallCache(t)
	deb := filepath.Join(cache, "debs", sb.FileName())
	wrong := strings.Repeat("ab", 32)
	_, err := unpackCached(deb, wrong, cache, []string{"usr/"})
	if !errors.Is(err, ErrChecksum) || !strings.Contains(err.Error(), wrong) {
		t.Fatalf("unpack of a package with another sum: %v, want ErrChecksum naming it", err)
	}
	if ents, _ := os.ReadDir(filepath.Join(cache, unpackedDir)); len(ents) != 0 {
		t.Errorf("a refused unpack left %d entries in the cache", len(ents))
	}
}

// A damaged kernel module in the unpacked kernel is refused when it is
// read, and only modules the package's listing names are indexed.
func TestModuleTreeRefusesDamagedModule(t *testing.T) {
	real := kernelTree(t, "qemu-x86_64")
	// A copy of the unpacked kernel with hard links (cheap); a damaged file
	// is replaced, never written through its link.
	dir := filepath.Join(t.TempDir(), "k")
	if out, err := exec.Command("cp", "-al", real.pkg.dir, dir).CombinedOutput(); err != nil {
		t.Fatalf("cp -al: %v: %s", err, out)
	}
	u, err := readUnpacked(dir, real.pkg.sum)
	if err != nil {
		t.Fatal(err)
	}
	rel := real.byName["nf_tables"]
	p := filepath.Join(dir, "lib", "modules", real.release, filepath.FromSlash(rel))
	orig, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(p)
	if err := os.WriteFile(p, orig[:len(orig)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	// A stray module the package does not have.
	stray := filepath.Join(dir, "lib", "modules", real.release, "kernel", "stray.ko")
	if err := os.WriteFile(stray, orig, 0o644); err != nil {
		t.Fatal(err)
	}
	mt, err := openModuleTree(u, real.release)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := mt.byName["stray"]; ok {
		t.Error("a module the package does not list was indexed")
	}
	_, err = mt.resolve([]string{"nft_ct"}, "test-board", "test-kernel")
	if !errors.Is(err, ErrCacheCorrupt) || !strings.Contains(err.Error(), rel) {
		t.Fatalf("resolve over a truncated nf_tables.ko: %v, want ErrCacheCorrupt naming it", err)
	}
}

// An unpack that another user could have altered (its directory, its
// parent or its listing group or world writable, owned by another user,
// or a symlink) is refused, naming the path, never used: its listing
// vouches for the files only while no one else can rewrite both.
func TestUnsafeUnpackRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give a file to another user")
	}
	cache, sb := smallCache(t)
	deb := filepath.Join(cache, "debs", sb.FileName())
	prefixes := []string{"usr/lib/systemd/boot/efi/"}
	parent := filepath.Join(cache, unpackedDir)
	dir := filepath.Join(parent, sb.SHA256)
	listing := filepath.Join(dir, unpackedComplete)
	for _, tc := range []struct {
		name     string
		damage   func() error
		repair   func() error
		wantPath string
	}{
		{"group-writable unpack", func() error { return os.Chmod(dir, 0o775) }, func() error { return os.Chmod(dir, 0o755) }, dir},
		{"world-writable parent", func() error { return os.Chmod(parent, 0o777) }, func() error { return os.Chmod(parent, 0o755) }, parent},
		{"listing of another user", func() error { return os.Chown(listing, 1000, 1000) }, func() error { return os.Chown(listing, 0, 0) }, listing},
		{"unpack is a symlink", func() error {
			if err := os.Rename(dir, dir+".real"); err != nil {
				return err
			}
			return os.Symlink(dir+".real", dir)
		}, func() error {
			if err := os.Remove(dir); err != nil {
				return err
			}
			return os.Rename(dir+".real", dir)
		}, dir},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := unpackCached(deb, sb.SHA256, cache, prefixes); err != nil {
				t.Fatal(err)
			}
			if err := tc.damage(); err != nil {
				t.Fatal(err)
			}
			_, err := unpackCached(deb, sb.SHA256, cache, prefixes)
			t.Logf("error: %v", err)
			if !errors.Is(err, ErrCacheUnsafe) || !strings.Contains(err.Error(), tc.wantPath+" ") {
				t.Fatalf("unpack over an unsafe cache: %v, want ErrCacheUnsafe naming %s", err, tc.wantPath)
			}
			if err := tc.repair(); err != nil {
				t.Fatal(err)
			}
		})
	}
}
