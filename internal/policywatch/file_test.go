package policywatch

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// replace stores content at path the way site.Store does: a new file
// renamed over the old one.
func replace(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// Each way a policy file changes gives it a new Version; an unchanged file
// keeps its Version, and an absent one has the zero Version.
func TestStatTellsVersionsApart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "applied.cbor")
	if v := Stat(path); v != (Version{}) {
		t.Fatalf("absent file: Stat = %+v, want the zero Version", v)
	}
	replace(t, path, "policy one")
	v1 := Stat(path)
	if v1 == (Version{}) {
		t.Fatal("present file: Stat is the zero Version")
	}
	if v := Stat(path); v != v1 {
		t.Fatalf("unchanged file: Stat = %+v, then %+v", v1, v)
	}
	// Same size and, on a coarse clock, the same mtime: the new inode
	// tells them apart.
	replace(t, path, "policy two")
	v2 := Stat(path)
	if v2 == v1 {
		t.Fatalf("file replaced by rename: Version unchanged %+v", v2)
	}
	// Rewritten in place with the same size: the mtime tells them apart.
	if err := os.WriteFile(path, []byte("policy 3!!"), 0o600); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Minute)
	if err := os.Chtimes(path, later, later); err != nil {
		t.Fatal(err)
	}
	if v := Stat(path); v == v2 {
		t.Fatalf("file rewritten in place with a new mtime: Version unchanged %+v", v)
	}
}

// A File reports a change after Mark only when the file changed, was
// created or removed; with no Path it never changes.
func TestFileChangedSinceMark(t *testing.T) {
	if (&File{}).Changed() {
		t.Error("a File with no Path changed")
	}
	path := filepath.Join(t.TempDir(), "applied.cbor")
	f := &File{Path: path}
	if f.Changed() {
		t.Error("never marked, absent: changed")
	}
	replace(t, path, "one")
	if !f.Changed() {
		t.Error("never marked, created: not changed")
	}
	f.Mark()
	if f.Changed() {
		t.Error("marked, untouched: changed")
	}
	replace(t, path, "two")
	if !f.Changed() {
		t.Error("marked, replaced: not changed")
	}
	f.Mark()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if !f.Changed() {
		t.Error("marked, removed: not changed")
	}
	f.Mark()
	if f.Changed() {
		t.Error("marked while absent, still absent: changed")
	}
}
