package image

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// ErrGoCacheUnsafe is wrapped by errors about a go build cache (GOCACHE)
// that someone other than the building user (or root) owns or may write,
// or that such a user could replace. The go command trusts what its cache
// holds by action ID: whoever may write the cache chooses the bytes of
// the image's binaries, and a repro-check whose two builds share the
// cache would not notice.
var ErrGoCacheUnsafe = errors.New("unsafe go build cache")

// ErrNoGoCache is wrapped by the error about a go command without a
// build cache (go env GOCACHE says off): it cannot build.
var ErrNoGoCache = errors.New("no go build cache")

// maxGoCacheLinks bounds the symbolic links followed on the way to the
// cache (the kernel's own limit is 40).
const maxGoCacheLinks = 40

// goCacheDir is the build cache the go commands of a build use: go env
// GOCACHE run in dir with env, the build's own environment.
func goCacheDir(ctx context.Context, dir string, env []string) (string, error) {
	out, err := goOutput(ctx, dir, env, "env", "GOCACHE")
	if err != nil {
		return "", err
	}
	cache := strings.TrimSpace(string(out))
	if cache == "" || cache == "off" {
		return "", fmt.Errorf("%w: go env GOCACHE says %q: the go command cannot build without its build cache (GOCACHE=off, a GOCACHE that is not an absolute path, or neither HOME nor XDG_CACHE_HOME set to find the default); set GOCACHE to a directory of your own",
			ErrNoGoCache, cache)
	}
	return cache, nil
}

// checkGoCache refuses a build cache that another user could have
// written to or could replace, the way OpenSSH's StrictModes and the
// kernel package cache (checkPrivate) do:
//
//   - every directory on the way to it, from /, belongs to the building
//     user or root and is not group or world writable, unless it has the
//     sticky bit (as /tmp): there others may add names but not rename or
//     remove the builder's;
//   - a symbolic link on the way belongs to the building user or root
//     (its owner could point it elsewhere at any time); it is followed
//     and the directories it leads to are checked the same way;
//   - the cache directory itself, and the go command's 256 directories of
//     entries in it (00 to ff), belong to the building user (the entry
//     directories: or root) and are not group or world writable.
//
// A POSIX ACL that lets another user write shows as the group write bit
// (its mask), so it is refused too. A missing directory on the way is
// made here (0755, in a directory just checked), as the go command would
// make it (0777 less the umask). Nothing is written into the cache.
func checkGoCache(cache string) error {
	if !filepath.IsAbs(cache) {
		return fmt.Errorf("%w: GOCACHE %s is not an absolute path: set GOCACHE to a directory of your own", ErrNoGoCache, cache)
	}
	uid := os.Geteuid()
	resolved := "/"
	if err := checkGoCacheParent(cache, resolved, uid); err != nil {
		return err
	}
	todo := pathElems(cache)
	links := 0
	for len(todo) > 0 {
		name := todo[0]
		todo = todo[1:]
		switch name {
		case ".":
			continue
		case "..":
			resolved = filepath.Dir(resolved) // checked on the way down
			continue
		}
		next := filepath.Join(resolved, name)
		fi, err := os.Lstat(next)
		if errors.Is(err, fs.ErrNotExist) {
			if err := os.Mkdir(next, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("GOCACHE %s: %w", cache, err)
			}
			fi, err = os.Lstat(next)
		}
		if err != nil {
			return fmt.Errorf("GOCACHE %s: %w", cache, err)
		}
		owner, err := ownerOf(cache, next, fi)
		if err != nil {
			return err
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			if owner != uid && owner != 0 {
				return fmt.Errorf("%w: GOCACHE %s: %s is a symbolic link of uid %d, the builder runs as uid %d: that user could point it at another cache at any time; set GOCACHE to a directory of your own",
					ErrGoCacheUnsafe, cache, next, owner, uid)
			}
			if links++; links > maxGoCacheLinks {
				return fmt.Errorf("GOCACHE %s: more than %d symbolic links on the way", cache, maxGoCacheLinks)
			}
			target, err := os.Readlink(next)
			if err != nil {
				return fmt.Errorf("GOCACHE %s: %w", cache, err)
			}
			if filepath.IsAbs(target) {
				resolved = "/"
			}
			todo = append(pathElems(target), todo...)
			continue
		}
		if !fi.IsDir() {
			return fmt.Errorf("GOCACHE %s: %s is not a directory", cache, next)
		}
		resolved = next
		if len(todo) > 0 { // the cache itself is checked below
			if err := checkGoCacheParent(cache, next, uid); err != nil {
				return err
			}
		}
	}

	fi, err := os.Lstat(resolved)
	if err != nil {
		return fmt.Errorf("GOCACHE %s: %w", cache, err)
	}
	owner, err := ownerOf(cache, resolved, fi)
	if err != nil {
		return err
	}
	name := cache
	if resolved != filepath.Clean(cache) {
		name += " (" + resolved + ")"
	}
	switch {
	case owner != uid:
		return fmt.Errorf("%w: GOCACHE %s belongs to uid %d, the builder runs as uid %d: that user could have put build outputs in it; set GOCACHE to a directory of your own",
			ErrGoCacheUnsafe, name, owner, uid)
	case fi.Mode().Perm()&0o022 != 0:
		return fmt.Errorf("%w: GOCACHE %s has mode %04o (group or world writable): another user could have put build outputs in it; remove it (what it holds cannot be trusted) or chmod -R go-w %s if no one else wrote to it, or set GOCACHE to a directory of your own",
			ErrGoCacheUnsafe, name, unixMode(fi.Mode()), resolved)
	}
	for i := 0; i < 256; i++ {
		d := filepath.Join(resolved, fmt.Sprintf("%02x", i))
		fi, err := os.Lstat(d)
		if errors.Is(err, fs.ErrNotExist) {
			continue // the go command makes it
		}
		if err != nil {
			return fmt.Errorf("GOCACHE %s: %w", cache, err)
		}
		owner, err := ownerOf(cache, d, fi)
		if err != nil {
			return err
		}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			return fmt.Errorf("%w: GOCACHE %s: %s is a symbolic link (the go command makes a directory): remove the cache or set GOCACHE to a directory of your own",
				ErrGoCacheUnsafe, cache, d)
		case owner != uid && owner != 0:
			return fmt.Errorf("%w: GOCACHE %s: %s belongs to uid %d, the builder runs as uid %d: that user could have put build outputs in it; remove the cache (what it holds cannot be trusted) or set GOCACHE to a directory of your own",
				ErrGoCacheUnsafe, cache, d, owner, uid)
		case fi.Mode().Perm()&0o022 != 0:
			return fmt.Errorf("%w: GOCACHE %s: %s has mode %04o (group or world writable): another user could have put build outputs in it; remove the cache (what it holds cannot be trusted) or chmod -R go-w %s if no one else wrote to it, or set GOCACHE to a directory of your own",
				ErrGoCacheUnsafe, cache, d, unixMode(fi.Mode()), resolved)
		}
	}
	return nil
}

// checkGoCacheParent checks dir, a directory on the way to the cache:
// whoever may write it could rename the cache away and put his own in
// its place.
func checkGoCacheParent(cache, dir string, uid int) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("GOCACHE %s: %w", cache, err)
	}
	owner, err := ownerOf(cache, dir, fi)
	if err != nil {
		return err
	}
	switch {
	case owner != uid && owner != 0:
		return fmt.Errorf("%w: GOCACHE %s: its parent %s belongs to uid %d, the builder runs as uid %d: that user could replace the cache; set GOCACHE to a directory of your own",
			ErrGoCacheUnsafe, cache, dir, owner, uid)
	case fi.Mode().Perm()&0o022 != 0 && fi.Mode()&fs.ModeSticky == 0:
		return fmt.Errorf("%w: GOCACHE %s: its parent %s has mode %04o (group or world writable, not sticky): another user could replace the cache; chmod go-w %s, or set GOCACHE to a directory of your own",
			ErrGoCacheUnsafe, cache, dir, unixMode(fi.Mode()), dir)
	}
	return nil
}

func ownerOf(cache, p string, fi fs.FileInfo) (int, error) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, fmt.Errorf("%w: GOCACHE %s: %s: no owner", ErrGoCacheUnsafe, cache, p)
	}
	return int(st.Uid), nil
}

// pathElems are the names of p, without empty ones.
func pathElems(p string) []string {
	return strings.FieldsFunc(p, func(r rune) bool { return r == '/' })
}

// unixMode is m's permission, setuid, setgid and sticky bits as chmod
// takes them.
func unixMode(m fs.FileMode) uint32 {
	b := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		b |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		b |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		b |= 0o1000
	}
	return b
}
