package alloc

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/otgate/otgate/internal/atomicfile"
)

// TestCrashAtEveryWritePoint interrupts the state write after each step
// of each of its two files (the state file, then its mirror), as a power
// cut would (no cleanup), and checks that the state on disk then loads
// as exactly the previous or the new table: never an error, never a
// mix; and that the reopened allocator has both copies equal again.
func TestCrashAtEveryWritePoint(t *testing.T) {
	cfg := Config{}
	first := []Request{{Asset: "a", Zone: "z1"}, {Asset: "b", Zone: "z1"}, {Asset: "c", Zone: "z2"}}
	second := []Request{{Asset: "b", Zone: "z1"}, {Asset: "c", Zone: "z2"}, {Asset: "d", Zone: "z2"}, {Asset: "e", Zone: "z3"}}

	// The two states a reload may show.
	ref := filepath.Join(t.TempDir(), "ref.cbor")
	r := open(t, ref)
	if _, err := r.Apply(cfg, first, t0); err != nil {
		t.Fatal(err)
	}
	oldTable := fmt.Sprint(r.Table(), r.Quarantined())
	if _, err := r.Apply(cfg, second, t0); err != nil {
		t.Fatal(err)
	}
	newTable := fmt.Sprint(r.Table(), r.Quarantined())

	for write, file := range []string{"state file", "mirror"} {
		for _, crashAfter := range atomicfile.Steps {
			t.Run(file+"/"+crashAfter.String(), func(t *testing.T) {
				path := filepath.Join(t.TempDir(), "alloc.cbor")
				a := open(t, path)
				if _, err := a.Apply(cfg, first, t0); err != nil {
					t.Fatal(err)
				}
				seen := 0
				crashing, err := Open(path, WithWriteHook(func(s atomicfile.Step) error {
					if s == crashAfter {
						if seen == write {
							return atomicfile.ErrCrash
						}
						seen++
					}
					return nil
				}))
				if err != nil {
					t.Fatal(err)
				}
				if _, err := crashing.Apply(cfg, second, t0); !errors.Is(err, atomicfile.ErrCrash) {
					t.Fatalf("Apply with a crash after the %s's %s: err = %v", file, crashAfter, err)
				}
				if got := fmt.Sprint(crashing.Table(), crashing.Quarantined()); got != oldTable {
					t.Errorf("in memory after a failed write: %s, want the old table %s", got, oldTable)
				}
				// "Reboot": load what is on disk.
				again, err := Open(path)
				if err != nil {
					t.Fatalf("reload after a crash after the %s's %s: %v", file, crashAfter, err)
				}
				got := fmt.Sprint(again.Table(), again.Quarantined())
				wantNew := write > 0 || crashAfter >= atomicfile.StepRename
				switch {
				case wantNew && got != newTable:
					t.Errorf("the state file was replaced, want the new table; got %s", got)
				case !wantNew && got != oldTable:
					t.Errorf("want the old table; got %s", got)
				}
				// Leftover temporary files are cleaned up by Open, and the
				// mirror is the state file's copy again.
				ents, _ := os.ReadDir(filepath.Dir(path))
				if len(ents) != 2 {
					t.Errorf("directory holds %d entries after reopen, want the state file and its mirror", len(ents))
				}
				sameCopies(t, path)
				// And the allocator carries on from there.
				if _, err := again.Apply(cfg, second, t0); err != nil {
					t.Fatal(err)
				}
				if got := fmt.Sprint(again.Table(), again.Quarantined()); got != newTable {
					t.Errorf("converged to %s, want %s", got, newTable)
				}
				sameCopies(t, path)
			})
		}
	}
}

// sameCopies fails the test unless the state file and its mirror hold
// the same bytes.
func sameCopies(t *testing.T, path string) {
	t.Helper()
	p, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m, err := os.ReadFile(MirrorPath(path))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(p, m) {
		t.Errorf("the state file (%d bytes) and its mirror (%d bytes) differ", len(p), len(m))
	}
}

// TestCorruptStateIsAnError: with no sound copy left (the state file
// damaged and its mirror damaged too or missing, or the state file
// missing and its mirror damaged) Open stops with ErrCorruptState and
// touches neither file, instead of starting from an empty table (which
// would renumber every asset). A missing state file with a damaged
// mirror used to be a fresh allocation.
func TestCorruptStateIsAnError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "alloc.cbor")
	mirror := MirrorPath(path)
	a := open(t, path)
	if _, err := a.Apply(Config{}, []Request{{Asset: "a", Zone: "z"}, {Asset: "b", Zone: "z", Pinned: ip("100.64.3.3")}}, t0); err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// put writes the state file and the mirror (nil: removed).
	put := func(p, m []byte) {
		t.Helper()
		for _, f := range []struct {
			path string
			b    []byte
		}{{path, p}, {mirror, m}} {
			if f.b == nil {
				if err := os.Remove(f.path); err != nil && !errors.Is(err, os.ErrNotExist) {
					t.Fatal(err)
				}
			} else if err := os.WriteFile(f.path, f.b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	refused := func(what string, p, m []byte) {
		t.Helper()
		put(p, m)
		if _, err := Open(path); !errors.Is(err, ErrCorruptState) {
			t.Fatalf("%s: err = %v, want ErrCorruptState", what, err)
		}
		for _, f := range []struct {
			path string
			b    []byte
		}{{path, p}, {mirror, m}} {
			got, err := os.ReadFile(f.path)
			if f.b == nil && !errors.Is(err, os.ErrNotExist) || f.b != nil && !bytes.Equal(got, f.b) {
				t.Fatalf("%s: %s changed by the refused Open", what, f.path)
			}
		}
	}
	for i := range good {
		for bit := 0; bit < 8; bit++ {
			b := append([]byte(nil), good...)
			b[i] ^= 1 << bit
			refused(fmt.Sprintf("byte %d bit %d flipped in both copies", i, bit), b, b)
		}
	}
	for n := 0; n < len(good); n++ {
		refused(fmt.Sprintf("both truncated to %d", n), good[:n], good[:n])
	}
	refused("state file truncated, no mirror", good[:len(good)-1], nil)
	refused("state file missing, mirror truncated", nil, good[:len(good)-1])
	flipped := append([]byte(nil), good...)
	flipped[len(good)/2] ^= 0x10
	refused("state file missing, mirror with a flipped bit", nil, flipped)
}

// TestStateDirectoryMadeDurably: the first Apply makes the state's
// missing directories with each new entry fsynced in its parent. They
// were made with os.MkdirAll, never synced: after a power cut soon after
// the first allocation the directory, and the fsynced state file in it,
// could be gone, and the next boot allocated afresh.
func TestStateDirectoryMadeDurably(t *testing.T) {
	root := t.TempDir()
	path := filepath.Join(root, "perm", "overlay", "alloc.cbor")
	a := open(t, path)
	var synced []string
	a.syncDir = func(dir string) error {
		synced = append(synced, dir)
		return atomicfile.SyncDir(dir)
	}
	if _, err := a.Apply(Config{}, []Request{{Asset: "a", Zone: "z"}}, t0); err != nil {
		t.Fatal(err)
	}
	want := []string{root, filepath.Join(root, "perm")}
	if fmt.Sprint(synced) != fmt.Sprint(want) {
		t.Errorf("directories fsynced for the new entries: %q, want %q", synced, want)
	}
}

// TestFailedMirrorWriteThenOldTable: a change whose mirror write fails
// leaves the new table in the state file while the old one is served; an
// Apply that plans the old table again must write it, or the next boot
// would serve the table that never was.
func TestFailedMirrorWriteThenOldTable(t *testing.T) {
	cfg := Config{}
	first := []Request{{Asset: "a", Zone: "z1"}, {Asset: "b", Zone: "z1"}}
	second := []Request{{Asset: "b", Zone: "z1"}, {Asset: "c", Zone: "z1"}}
	path := filepath.Join(t.TempDir(), "alloc.cbor")
	a := open(t, path)
	if _, err := a.Apply(cfg, first, t0); err != nil {
		t.Fatal(err)
	}
	served := fmt.Sprint(a.Table(), a.Quarantined())
	// The mirror's write fails (the second file written).
	writes := 0
	a.hook = func(s atomicfile.Step) error {
		if s == atomicfile.StepCreateTemp {
			if writes++; writes == 2 {
				return errors.New("disk full")
			}
		}
		return nil
	}
	if _, err := a.Apply(cfg, second, t0); err == nil {
		t.Fatal("Apply with a failing mirror write succeeded")
	}
	a.hook = nil
	if _, err := a.Apply(cfg, first, t0); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(a.Table(), a.Quarantined()); got != served {
		t.Fatalf("served %s, want %s", got, served)
	}
	b := open(t, path)
	if got := fmt.Sprint(b.Table(), b.Quarantined()); got != served {
		t.Fatalf("after a reopen: %s, want the table served before it, %s", got, served)
	}
	sameCopies(t, path)
}
