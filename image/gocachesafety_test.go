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

// nobody is the uid the tests give directories to: another user.
const nobody = 65534

// realTempDir is t.TempDir() with its symbolic links resolved, so that
// the paths errors name can be compared.
func realTempDir(t *testing.T) string {
	t.Helper()
	d, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// mkdirMode makes dir with exactly mode (no umask).
func mkdirMode(t *testing.T, dir string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, mode); err != nil {
		t.Fatal(err)
	}
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to give a directory to another user")
	}
}

// wantUnsafe fails unless err is ErrGoCacheUnsafe naming path (followed
// by a space, so that a longer path does not count) and holding each of
// the words.
func wantUnsafe(t *testing.T, err error, path string, words ...string) {
	t.Helper()
	t.Logf("error: %v", err)
	if !errors.Is(err, ErrGoCacheUnsafe) {
		t.Fatalf("checkGoCache: %v, want ErrGoCacheUnsafe", err)
	}
	if !strings.Contains(err.Error(), path+" ") {
		t.Errorf("error does not name %s: %v", path, err)
	}
	for _, w := range words {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error does not say %q: %v", w, err)
		}
	}
}

// A private cache passes: 0755 or 0700, entry directories 0755, under a
// private parent or under a sticky root-owned one (as /tmp, which holds
// t.TempDir()).
func TestGoCachePrivatePasses(t *testing.T) {
	for _, mode := range []os.FileMode{0o755, 0o700} {
		root := realTempDir(t)
		cache := filepath.Join(root, "home", "go-build")
		mkdirMode(t, filepath.Join(root, "home"), 0o700)
		mkdirMode(t, cache, mode)
		mkdirMode(t, filepath.Join(cache, "00"), 0o755)
		mkdirMode(t, filepath.Join(cache, "ff"), 0o700)
		if err := os.WriteFile(filepath.Join(cache, "README"), []byte("go cache\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := checkGoCache(cache); err != nil {
			t.Errorf("private cache, mode %04o: %v", mode, err)
		}
	}
}

// A parent that everyone may write but that has the sticky bit and
// belongs to root (as /tmp) passes: others may add names there but not
// rename or remove the cache.
func TestGoCacheStickyParentPasses(t *testing.T) {
	needRoot(t) // the shared directory belongs to root
	root := realTempDir(t)
	shared := filepath.Join(root, "shared")
	mkdirMode(t, shared, 0o777|os.ModeSticky)
	cache := filepath.Join(shared, "gocache")
	mkdirMode(t, cache, 0o755)
	if err := checkGoCache(cache); err != nil {
		t.Fatalf("cache in a sticky root-owned directory: %v", err)
	}
}

// A cache that does not exist yet is made 0755 (the go command would
// make it with its umask) and passes.
func TestGoCacheMissingMadePrivate(t *testing.T) {
	root := realTempDir(t)
	cache := filepath.Join(root, "a", "b", "go-build")
	if err := checkGoCache(cache); err != nil {
		t.Fatalf("missing cache: %v", err)
	}
	for _, d := range []string{filepath.Join(root, "a"), filepath.Join(root, "a", "b"), cache} {
		st, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm()&0o022 != 0 || !st.IsDir() {
			t.Errorf("%s made with mode %v", d, st.Mode())
		}
	}
	ents, err := os.ReadDir(cache)
	if err != nil || len(ents) != 0 {
		t.Errorf("the check wrote into the cache: %v %v", ents, err)
	}
}

// A cache that the group or others may write is refused, naming the
// directory, its mode and the fix; so is one whose directory of entries
// (00 to ff) is.
func TestGoCacheWritableRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		mode os.FileMode
		want string
	}{
		{"group-writable", 0o775, "mode 0775"},
		{"group-writable, private to others", 0o770, "mode 0770"},
		{"other-writable", 0o757, "mode 0757"},
		{"world-writable", 0o777, "mode 0777"},
		{"sticky world-writable", 0o777 | os.ModeSticky, "mode 1777"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cache := filepath.Join(realTempDir(t), "go-build")
			mkdirMode(t, cache, tc.mode)
			wantUnsafe(t, checkGoCache(cache), cache, tc.want, "group or world writable", "chmod -R go-w "+cache, "set GOCACHE")
		})
	}
	t.Run("entry directory", func(t *testing.T) {
		cache := filepath.Join(realTempDir(t), "go-build")
		mkdirMode(t, cache, 0o755)
		mkdirMode(t, filepath.Join(cache, "00"), 0o755)
		shard := filepath.Join(cache, "a7")
		mkdirMode(t, shard, 0o777)
		wantUnsafe(t, checkGoCache(cache), shard, "mode 0777", "chmod -R go-w "+cache)
	})
	t.Run("entry directory is a link", func(t *testing.T) {
		root := realTempDir(t)
		cache := filepath.Join(root, "go-build")
		mkdirMode(t, cache, 0o755)
		mkdirMode(t, filepath.Join(root, "elsewhere"), 0o755)
		shard := filepath.Join(cache, "3c")
		if err := os.Symlink(filepath.Join(root, "elsewhere"), shard); err != nil {
			t.Fatal(err)
		}
		wantUnsafe(t, checkGoCache(cache), shard, "symbolic link")
	})
}

// A cache, an entry directory of it or a directory on the way to it that
// another user owns is refused, naming it and the uid.
func TestGoCacheOtherOwnerRefused(t *testing.T) {
	needRoot(t)
	t.Run("cache", func(t *testing.T) {
		cache := filepath.Join(realTempDir(t), "go-build")
		mkdirMode(t, cache, 0o755)
		if err := os.Chown(cache, nobody, nobody); err != nil {
			t.Fatal(err)
		}
		wantUnsafe(t, checkGoCache(cache), cache, "belongs to uid 65534", "runs as uid 0", "set GOCACHE")
	})
	t.Run("entry directory", func(t *testing.T) {
		cache := filepath.Join(realTempDir(t), "go-build")
		shard := filepath.Join(cache, "10")
		mkdirMode(t, shard, 0o755)
		if err := os.Chown(shard, nobody, nobody); err != nil {
			t.Fatal(err)
		}
		wantUnsafe(t, checkGoCache(cache), shard, "belongs to uid 65534")
	})
	t.Run("parent", func(t *testing.T) {
		home := filepath.Join(realTempDir(t), "home")
		cache := filepath.Join(home, "go-build")
		mkdirMode(t, cache, 0o755)
		if err := os.Chown(home, nobody, nobody); err != nil {
			t.Fatal(err)
		}
		wantUnsafe(t, checkGoCache(cache), home, "its parent", "belongs to uid 65534")
	})
	t.Run("sticky parent of another user", func(t *testing.T) {
		shared := filepath.Join(realTempDir(t), "shared")
		cache := filepath.Join(shared, "go-build")
		mkdirMode(t, cache, 0o755)
		mkdirMode(t, shared, 0o777|os.ModeSticky)
		if err := os.Chown(shared, nobody, nobody); err != nil {
			t.Fatal(err)
		}
		wantUnsafe(t, checkGoCache(cache), shared, "belongs to uid 65534")
	})
}

// A directory on the way to the cache that the group or others may
// write, without the sticky bit, is refused: they could rename the cache
// away and put their own in its place.
func TestGoCacheWritableParentRefused(t *testing.T) {
	for _, mode := range []os.FileMode{0o777, 0o775, 0o757} {
		root := realTempDir(t)
		parent := filepath.Join(root, "shared")
		cache := filepath.Join(parent, "deeper", "go-build")
		mkdirMode(t, cache, 0o755)
		mkdirMode(t, parent, mode)
		wantUnsafe(t, checkGoCache(cache), parent, "its parent", "mode "+octal(mode), "not sticky", "chmod go-w "+parent)
	}
}

func octal(m os.FileMode) string {
	const digits = "01234567"
	b := unixMode(m)
	return string([]byte{digits[b>>9&7], digits[b>>6&7], digits[b>>3&7], digits[b&7]})
}

// Symbolic links on the way are followed and what they lead to is
// checked; a link another user owns (he could point it elsewhere at any
// time, e.g. in /tmp) is refused.
func TestGoCacheSymlinks(t *testing.T) {
	t.Run("own link to a private cache", func(t *testing.T) {
		root := realTempDir(t)
		real := filepath.Join(root, "real", "go-build")
		mkdirMode(t, real, 0o755)
		if err := os.Symlink("real", filepath.Join(root, "link")); err != nil {
			t.Fatal(err)
		}
		if err := checkGoCache(filepath.Join(root, "link", "go-build")); err != nil {
			t.Fatalf("cache through a link: %v", err)
		}
	})
	t.Run("own link to an unsafe cache", func(t *testing.T) {
		root := realTempDir(t)
		real := filepath.Join(root, "real")
		mkdirMode(t, real, 0o777)
		link := filepath.Join(root, "cache")
		if err := os.Symlink(real, link); err != nil {
			t.Fatal(err)
		}
		wantUnsafe(t, checkGoCache(link), link, "("+real+")", "mode 0777")
	})
	t.Run("link to a cache under a writable parent", func(t *testing.T) {
		root := realTempDir(t)
		open := filepath.Join(root, "open")
		mkdirMode(t, filepath.Join(open, "go-build"), 0o755)
		mkdirMode(t, open, 0o777)
		if err := os.Symlink("../"+filepath.Base(root)+"/open/go-build", filepath.Join(root, "cache")); err != nil {
			t.Fatal(err)
		}
		wantUnsafe(t, checkGoCache(filepath.Join(root, "cache")), open, "its parent", "mode 0777")
	})
	t.Run("link of another user", func(t *testing.T) {
		needRoot(t)
		root := realTempDir(t)
		shared := filepath.Join(root, "shared")
		mkdirMode(t, shared, 0o777|os.ModeSticky)
		real := filepath.Join(root, "mine", "go-build")
		mkdirMode(t, real, 0o755)
		link := filepath.Join(shared, "cache")
		if err := os.Symlink(real, link); err != nil {
			t.Fatal(err)
		}
		if err := os.Lchown(link, nobody, nobody); err != nil {
			t.Fatal(err)
		}
		wantUnsafe(t, checkGoCache(link), link, "symbolic link of uid 65534")
	})
	t.Run("loop", func(t *testing.T) {
		root := realTempDir(t)
		if err := os.Symlink("loop", filepath.Join(root, "loop")); err != nil {
			t.Fatal(err)
		}
		err := checkGoCache(filepath.Join(root, "loop"))
		if err == nil || !strings.Contains(err.Error(), "symbolic links") {
			t.Fatalf("link loop: %v", err)
		}
	})
}

// go env GOCACHE says off for GOCACHE=off, a relative GOCACHE, or no
// home to find the default: the go command cannot build, and the
// builder says so before building.
func TestGoCacheOff(t *testing.T) {
	for _, v := range []string{"off", "relative/cache"} {
		t.Setenv("GOCACHE", v)
		env, err := hostGoEnv()
		if err != nil {
			t.Fatal(err)
		}
		_, err = goCacheDir(context.Background(), sourceRoot(t), env)
		t.Logf("GOCACHE=%s: %v", v, err)
		if !errors.Is(err, ErrNoGoCache) || !strings.Contains(err.Error(), "cannot build without its build cache") {
			t.Errorf("GOCACHE=%s: %v, want ErrNoGoCache", v, err)
		}
	}
}

// End to end: Build with an unsafe GOCACHE stops before building or
// fetching anything, names the directory, and leaves no image and no
// temporary directory in the output directory; GOCACHE=off likewise.
func TestBuildRefusesUnsafeGoCache(t *testing.T) {
	unsafe := filepath.Join(realTempDir(t), "go-build")
	mkdirMode(t, unsafe, 0o777)
	for _, tc := range []struct {
		gocache string
		want    error
	}{
		{unsafe, ErrGoCacheUnsafe},
		{"off", ErrNoGoCache},
	} {
		t.Run(filepath.Base(tc.gocache), func(t *testing.T) {
			t.Setenv("GOCACHE", tc.gocache)
			out := filepath.Join(t.TempDir(), "out")
			dl := t.TempDir()
			var log bytes.Buffer
			_, err := Build(context.Background(), testBoard(t, "qemu-x86_64"), WithSourceDir(sourceRoot(t)), WithCacheDir(dl), WithOutDir(out), WithLog(&log))
			t.Logf("error: %v", err)
			if !errors.Is(err, tc.want) {
				t.Fatalf("build with GOCACHE=%s: %v, want %v\nlog:\n%s", tc.gocache, err, tc.want, log.String())
			}
			if tc.want == ErrGoCacheUnsafe && !strings.Contains(err.Error(), unsafe+" ") {
				t.Errorf("error does not name %s: %v", unsafe, err)
			}
			if !strings.Contains(log.String(), "failed") {
				t.Errorf("the log does not say the build failed:\n%s", log.String())
			}
			assertNoImage(t, out)
			if ents, _ := os.ReadDir(dl); len(ents) != 0 {
				t.Errorf("the refused build used the download cache: %v", ents)
			}
			if ents, _ := os.ReadDir(unsafe); len(ents) != 0 {
				t.Errorf("the refused build wrote into the unsafe GOCACHE: %v", ents)
			}
		})
	}
}
