package alloc

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/otgate/otgate/internal/atomicfile"
)

// TestCrashAtEveryWritePoint interrupts the state write after each of
// its steps, as a power cut would (no cleanup), and checks that the
// state on disk then loads as exactly the previous or the new table:
// never an error, never a mix.
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

	for _, crashAfter := range atomicfile.Steps {
		t.Run(crashAfter.String(), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "alloc.cbor")
			a := open(t, path)
			if _, err := a.Apply(cfg, first, t0); err != nil {
				t.Fatal(err)
			}
			crashing, err := Open(path, WithWriteHook(func(s atomicfile.Step) error {
				if s == crashAfter {
					return atomicfile.ErrCrash
				}
				return nil
			}))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := crashing.Apply(cfg, second, t0); !errors.Is(err, atomicfile.ErrCrash) {
				t.Fatalf("Apply with a crash after %s: err = %v", crashAfter, err)
			}
			if got := fmt.Sprint(crashing.Table(), crashing.Quarantined()); got != oldTable {
				t.Errorf("in memory after a failed write: %s, want the old table %s", got, oldTable)
			}
			// "Reboot": load what is on disk.
			again, err := Open(path)
			if err != nil {
				t.Fatalf("reload after a crash after %s: %v", crashAfter, err)
			}
			got := fmt.Sprint(again.Table(), again.Quarantined())
			wantNew := crashAfter >= atomicfile.StepRename
			switch {
			case wantNew && got != newTable:
				t.Errorf("after %s the rename happened, want the new table; got %s", crashAfter, got)
			case !wantNew && got != oldTable:
				t.Errorf("after %s want the old table; got %s", crashAfter, got)
			}
			// Leftover temporary files are cleaned up by Open.
			ents, _ := os.ReadDir(filepath.Dir(path))
			if len(ents) != 1 {
				t.Errorf("directory holds %d entries after reopen, want only the state file", len(ents))
			}
			// And the allocator carries on from there.
			if _, err := again.Apply(cfg, second, t0); err != nil {
				t.Fatal(err)
			}
			if got := fmt.Sprint(again.Table(), again.Quarantined()); got != newTable {
				t.Errorf("converged to %s, want %s", got, newTable)
			}
		})
	}
}

// TestCorruptStateIsAnError: a damaged state file stops Open with
// ErrCorruptState instead of starting from an empty table (which would
// renumber every asset).
func TestCorruptStateIsAnError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "alloc.cbor")
	a := open(t, path)
	if _, err := a.Apply(Config{}, []Request{{Asset: "a", Zone: "z"}, {Asset: "b", Zone: "z", Pinned: ip("100.64.3.3")}}, t0); err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := range good {
		for bit := 0; bit < 8; bit++ {
			b := append([]byte(nil), good...)
			b[i] ^= 1 << bit
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := Open(path); !errors.Is(err, ErrCorruptState) {
				t.Fatalf("byte %d bit %d flipped: err = %v, want ErrCorruptState", i, bit, err)
			}
		}
	}
	for n := 0; n < len(good); n++ {
		if err := os.WriteFile(path, good[:n], 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(path); !errors.Is(err, ErrCorruptState) {
			t.Fatalf("truncated to %d: err = %v, want ErrCorruptState", n, err)
		}
	}
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
