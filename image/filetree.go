package image

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// entryKind is the type of a file in the initramfs.
type entryKind int

const (
	kindDir entryKind = iota
	kindFile
	kindSymlink
	kindCharDev
)

// entry is one file of the initramfs.
type entry struct {
	kind         entryKind
	perm         uint32
	data         []byte // file content or symlink target
	major, minor uint32 // character devices
	from         string // where it came from, for error messages
}

// fileTree is the initramfs content, keyed by clean absolute path.
// Parents are explicit directories (0755 unless added otherwise).
type fileTree struct {
	entries map[string]*entry
}

func newFileTree() *fileTree {
	return &fileTree{entries: map[string]*entry{"/": {kind: kindDir, perm: 0o755, from: "builder"}}}
}

func (t *fileTree) add(name string, e *entry) error {
	if !path.IsAbs(name) || path.Clean(name) != name {
		return fmt.Errorf("initramfs path %q (from %s) is not clean and absolute", name, e.from)
	}
	if old, ok := t.entries[name]; ok {
		if old.kind == kindDir && e.kind == kindDir {
			return nil
		}
		return fmt.Errorf("initramfs path %s: from %s conflicts with %s", name, e.from, old.from)
	}
	if dir := path.Dir(name); dir != name {
		if err := t.add(dir, &entry{kind: kindDir, perm: 0o755, from: e.from}); err != nil {
			return err
		}
		if p := t.entries[dir]; p.kind != kindDir {
			return fmt.Errorf("initramfs path %s: parent %s (from %s) is not a directory", name, dir, p.from)
		}
	}
	t.entries[name] = e
	return nil
}

func (t *fileTree) addData(name string, perm uint32, data []byte, from string) error {
	return t.add(name, &entry{kind: kindFile, perm: perm, data: data, from: from})
}

func (t *fileTree) addFile(name string, perm uint32, src string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return t.addData(name, perm, data, src)
}

// exists tells whether name is a regular file of the tree, or a link
// (through links) to one.
func (t *fileTree) exists(name string) bool {
	for hops := 0; hops < 8; hops++ { // a link to a link, at most 8 deep
		e, ok := t.entries[name]
		switch {
		case !ok:
			return false
		case e.kind == kindFile:
			return true
		case e.kind != kindSymlink:
			return false
		}
		target := string(e.data)
		if !path.IsAbs(target) {
			target = path.Join(path.Dir(name), target)
		}
		name = target
	}
	return false
}

// addDir copies the directory src below dst: directories 0755, files 0755
// when any execute bit is set else 0644 (all git records), symlinks as
// they are. Other file types are errors.
func (t *fileTree) addDir(dst, src string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		name := path.Join(dst, filepath.ToSlash(rel))
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch m := info.Mode(); {
		case m.IsDir():
			return t.add(name, &entry{kind: kindDir, perm: 0o755, from: p})
		case m.IsRegular():
			perm := uint32(0o644)
			if m.Perm()&0o111 != 0 {
				perm = 0o755
			}
			return t.addFile(name, perm, p)
		case m&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return t.add(name, &entry{kind: kindSymlink, perm: 0o777, data: []byte(target), from: p})
		default:
			return fmt.Errorf("%s: unsupported file type %v", p, m.Type())
		}
	})
}

// names returns the paths in byte order: a parent sorts before its
// children because it is their prefix.
func (t *fileTree) names() []string {
	n := make([]string, 0, len(t.entries))
	for k := range t.entries {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}

// listing writes one line per entry (path, kind, mode, sha256 of the
// content): the identity of the tree, hashed into the image ID.
func (t *fileTree) listing(w io.Writer, skip string) {
	for _, n := range t.names() {
		if n == skip {
			continue
		}
		e := t.entries[n]
		sum := sha256.Sum256(e.data)
		fmt.Fprintf(w, "%s %d %o %d:%d %s\n", n, e.kind, e.perm, e.major, e.minor, hex.EncodeToString(sum[:]))
	}
}

// size is the total size of the file contents.
func (t *fileTree) size() int64 {
	var s int64
	for _, e := range t.entries {
		s += int64(len(e.data))
	}
	return s
}

func (t *fileTree) String() string {
	return strings.Join(t.names(), "\n")
}
