package image

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/blakesmith/ar"
	"github.com/ulikunitz/xz"
)

// tarEntry is one member of a crafted package's data.tar.xz.
type tarEntry struct {
	name, link string
	typ        byte
	data       string
	size       int64 // header size when not len(data) (a lying header)
}

// writeDeb writes a real Debian package (ar: debian-binary,
// control.tar.xz, data.tar.xz) holding entries to dir and returns its path
// and sha256.
func writeDeb(t *testing.T, dir string, entries []tarEntry) (string, string) {
	t.Helper()
	var data bytes.Buffer
	xw, err := xz.NewWriter(&data)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(xw)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: 0o644, Size: int64(len(e.data)), ModTime: time.Unix(0, 0)}
		if e.typ == tar.TypeDir || e.typ == tar.TypeSymlink || e.typ == tar.TypeChar || e.typ == tar.TypeLink {
			h.Size = 0
		}
		if e.size != 0 {
			h.Size = e.size
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if e.data != "" {
			if _, err := tw.Write([]byte(e.data)); err != nil && e.size == 0 {
				t.Fatal(err)
			}
		}
	}
	tw.Flush() // a lying header leaves the archive unterminated
	if e := entries[len(entries)-1]; e.size == 0 {
		if err := tw.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if err := xw.Close(); err != nil {
		t.Fatal(err)
	}
	var deb bytes.Buffer
	w := ar.NewWriter(&deb)
	if err := w.WriteGlobalHeader(); err != nil {
		t.Fatal(err)
	}
	for _, m := range []struct {
		name string
		data []byte
	}{{"debian-binary", []byte("2.0\n")}, {"control.tar.xz", nil}, {"data.tar.xz", data.Bytes()}} {
		if err := w.WriteHeader(&ar.Header{Name: m.name, Mode: 0o644, Size: int64(len(m.data))}); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(m.data); err != nil {
			t.Fatal(err)
		}
	}
	p := filepath.Join(dir, "crafted_1.0_amd64.deb")
	if err := os.WriteFile(p, deb.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(deb.Bytes())
	return p, hex.EncodeToString(sum[:])
}

// A package (pinned, so its sha256 matches) whose data.tar tries to
// write or point outside the extraction directory, to overwrite an
// earlier entry, or to unpack more than any package may, is refused with
// an error naming the package and the entry; nothing outside the cache is
// touched, and no unpack is left in the cache.
func TestUnpackRefusesHostileTar(t *testing.T) {
	defer func(m int64) { maxUnpackedSize = m }(maxUnpackedSize)
	maxUnpackedSize = 1 << 20
	reg := func(name, data string) tarEntry { return tarEntry{name: name, typ: tar.TypeReg, data: data} }
	link := func(name, target string) tarEntry { return tarEntry{name: name, typ: tar.TypeSymlink, link: target} }
	for _, tc := range []struct {
		name    string
		entries func(outside, up string) []tarEntry
		want    string
	}{
		{"dotdot path", func(_, _ string) []tarEntry { return []tarEntry{reg("./boot/../../x", "x")} }, `"./boot/../../x" leaves`},
		{"absolute path", func(_, _ string) []tarEntry { return []tarEntry{reg("/boot/x", "x")} }, `"/boot/x" leaves`},
		{"file through a symlinked directory", func(outside, _ string) []tarEntry {
			return []tarEntry{link("./boot/d", outside), reg("./boot/d/victim", "pwned")}
		}, `"./boot/d"`},
		{"file through a relative symlinked directory", func(_, up string) []tarEntry {
			return []tarEntry{link("./boot/d", up), reg("./boot/d/victim", "pwned")}
		}, `"./boot/d"`},
		{"file below a symlink that stays inside", func(_, _ string) []tarEntry {
			return []tarEntry{{name: "./boot/sub/", typ: tar.TypeDir}, link("./boot/d", "sub"), reg("./boot/d/x", "x")}
		}, `"./boot/d/x": its parent boot/d is a symlink`},
		{"file over a symlink that stays inside", func(_, _ string) []tarEntry {
			return []tarEntry{link("./boot/f", "g"), reg("./boot/f", "x")}
		}, `"./boot/f": an earlier entry`},
		{"file over a symlink", func(outside, _ string) []tarEntry {
			return []tarEntry{link("./boot/f", filepath.Join(outside, "victim")), reg("./boot/f", "pwned")}
		}, `"./boot/f"`},
		{"dotdot symlink that looks inside", func(_, _ string) []tarEntry {
			return []tarEntry{link("./boot/x/y/up", "../../.."), link("./boot/x/y/esc", "up/../../../..")}
		}, `"./boot/x/y/up"`},
		{"same file twice", func(_, _ string) []tarEntry { return []tarEntry{reg("./boot/f", "one"), reg("./boot/f", "two")} }, `"./boot/f": an earlier entry`},
		{"device", func(_, _ string) []tarEntry { return []tarEntry{{name: "./boot/mem", typ: tar.TypeChar}} }, `"./boot/mem": unsupported tar type`},
		{"hard link", func(_, _ string) []tarEntry {
			return []tarEntry{reg("./boot/a", "a"), {name: "./boot/b", typ: tar.TypeLink, link: "./boot/a"}}
		}, `"./boot/b": unsupported tar type`},
		{"huge file", func(_, _ string) []tarEntry {
			return []tarEntry{{name: "./boot/huge", typ: tar.TypeReg, data: "x", size: 8 << 30}}
		}, `"./boot/huge": 8589934592 bytes`},
		{"many files over the bound", func(_, _ string) []tarEntry {
			big := strings.Repeat("z", 600<<10)
			return []tarEntry{reg("./boot/a", big), reg("./boot/b", big)}
		}, `"./boot/b"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			outside := t.TempDir()
			if err := os.WriteFile(filepath.Join(outside, "victim"), []byte("original"), 0o644); err != nil {
				t.Fatal(err)
			}
			cache := t.TempDir()
			// outside, relative to boot/ of the unpack in the cache.
			up, err := filepath.Rel(filepath.Join(cache, unpackedDir, "tmp-dir", "boot"), outside)
			if err != nil {
				t.Fatal(err)
			}
			deb, sum := writeDeb(t, t.TempDir(), tc.entries(outside, up))
			_, err = unpackCached(deb, sum, cache, []string{"boot/"})
			t.Logf("error: %v", err)
			if err == nil || !strings.Contains(err.Error(), deb) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("unpack: %v, want an error naming %s and %s", err, deb, tc.want)
			}
			if b, _ := os.ReadFile(filepath.Join(outside, "victim")); string(b) != "original" {
				t.Errorf("unpack wrote %q outside the cache", b)
			}
			if ents, _ := os.ReadDir(filepath.Join(cache, unpackedDir)); len(ents) != 0 {
				t.Errorf("a refused unpack left %d entries in the cache", len(ents))
			}
		})
	}
}

// What the builder reads is unpacked: files, directories and links that
// go down from their directory.
func TestUnpackCraftedPackage(t *testing.T) {
	cache := t.TempDir()
	deb, sum := writeDeb(t, t.TempDir(), []tarEntry{
		{name: "./boot/", typ: tar.TypeDir},
		{name: "./boot/vmlinuz", typ: tar.TypeReg, data: "kernel"},
		{name: "./boot/sub/", typ: tar.TypeDir},
		{name: "./boot/current", typ: tar.TypeSymlink, link: "sub/x"},
		{name: "./usr/share/doc/f", typ: tar.TypeSymlink, link: "/etc/passwd"}, // not kept
	})
	u, err := unpackCached(deb, sum, cache, []string{"boot/"})
	if err != nil {
		t.Fatal(err)
	}
	if b, err := u.readFile("boot/vmlinuz"); err != nil || string(b) != "kernel" {
		t.Fatalf("boot/vmlinuz: %q, %v", b, err)
	}
	if l, err := os.Readlink(u.abs("boot/current")); err != nil || l != "sub/x" {
		t.Errorf("boot/current: %q, %v", l, err)
	}
}
