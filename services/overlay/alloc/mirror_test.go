package alloc

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/otgate/otgate/internal/atomicfile"
)

// mirrorLab is an allocator's state (a few assets, one quarantined) on
// disk in two sound copies.
type mirrorLab struct {
	path  string
	good  []byte // the sound state, as written
	table string // its table and quarantine, printed
}

func newMirrorLab(t *testing.T) *mirrorLab {
	t.Helper()
	path := filepath.Join(t.TempDir(), "alloc.cbor")
	a := open(t, path)
	reqs := []Request{{Asset: "plc-1", Zone: "z"}, {Asset: "plc-2", Zone: "z"}, {Asset: "rtu-1", Zone: "y", Pinned: ip("100.64.9.9")}}
	if _, err := a.Apply(Config{}, reqs, t0); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Apply(Config{}, reqs[1:], t0); err != nil { // plc-1 quarantined
		t.Fatal(err)
	}
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sameCopies(t, path)
	return &mirrorLab{path: path, good: good, table: fmt.Sprint(a.Table(), a.Quarantined())}
}

// openLogged opens the lab's state with a log it returns.
func (l *mirrorLab) openLogged(t *testing.T, opts ...Option) (*Allocator, string, error) {
	t.Helper()
	var logs strings.Builder
	opts = append(opts, WithLog(func(format string, args ...any) {
		fmt.Fprintf(&logs, format+"\n", args...)
	}))
	a, err := Open(l.path, opts...)
	t.Logf("log: %q", logs.String())
	return a, logs.String(), err
}

// TestStateRestoredFromMirror: a state file damaged (truncated, a flipped
// bit anywhere) or missing while its mirror is sound opens as the same
// table, says so in the log, and is rewritten from the mirror. A damaged
// state file used to stop the allocator for good, a missing one to start
// allocation afresh with new endpoints.
func TestStateRestoredFromMirror(t *testing.T) {
	l := newMirrorLab(t)
	check := func(what string, damage func()) {
		t.Helper()
		damage()
		a, logs, err := l.openLogged(t)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if got := fmt.Sprint(a.Table(), a.Quarantined()); got != l.table {
			t.Errorf("%s: opened as %s, want %s", what, got, l.table)
		}
		if !strings.Contains(logs, "overlay: alloc: the state file ") || !strings.Contains(logs, l.path+" ") && !strings.Contains(logs, l.path+":") || !strings.Contains(logs, "restoring it from its mirror "+MirrorPath(l.path)+" (2 assets, 1 quarantined addresses)") {
			t.Errorf("%s: the restore was not logged: %q", what, logs)
		}
		if b, err := os.ReadFile(l.path); err != nil || !bytes.Equal(b, l.good) {
			t.Fatalf("%s: the state file was not restored (err %v)", what, err)
		}
		sameCopies(t, l.path)
	}
	write := func(b []byte) func() {
		return func() {
			if err := os.WriteFile(l.path, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	check("missing", func() {
		if err := os.Remove(l.path); err != nil {
			t.Fatal(err)
		}
	})
	check("empty", write(nil))
	for _, n := range []int{1, len(l.good) / 2, len(l.good) - 1} {
		check(fmt.Sprintf("truncated to %d bytes", n), write(l.good[:n]))
	}
	for i := range l.good {
		b := append([]byte(nil), l.good...)
		b[i] ^= 1 << (i % 8)
		check(fmt.Sprintf("bit %d of byte %d flipped", i%8, i), write(b))
	}
	if ents, _ := os.ReadDir(filepath.Dir(l.path)); len(ents) != 2 {
		t.Errorf("the state's directory holds %d entries, want the state file and its mirror", len(ents))
	}
}

// TestMirrorRewritten: a mirror missing (a state written by a build
// without mirrors), damaged or out of date is rewritten from the sound
// state file at Open, with a log line; a sound pair is left alone.
func TestMirrorRewritten(t *testing.T) {
	l := newMirrorLab(t)
	mirror := MirrorPath(l.path)
	check := func(what, logged string, damage func()) {
		t.Helper()
		damage()
		a, logs, err := l.openLogged(t)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if got := fmt.Sprint(a.Table(), a.Quarantined()); got != l.table {
			t.Errorf("%s: opened as %s, want %s", what, got, l.table)
		}
		if !strings.Contains(logs, logged) {
			t.Errorf("%s: log %q, want it to say %q", what, logs, logged)
		}
		sameCopies(t, l.path)
	}
	check("missing", "the state's mirror "+mirror+" is missing; writing it from "+l.path, func() {
		if err := os.Remove(mirror); err != nil {
			t.Fatal(err)
		}
	})
	check("damaged", "the state's mirror is damaged ("+mirror+": corrupt allocator state: checksum mismatch); rewriting it from "+l.path, func() {
		b := append([]byte(nil), l.good...)
		b[len(b)-40] ^= 1
		if err := os.WriteFile(mirror, b, 0o600); err != nil {
			t.Fatal(err)
		}
	})
	older := filepath.Join(t.TempDir(), "older.cbor")
	o := open(t, older)
	if _, err := o.Apply(Config{}, []Request{{Asset: "plc-1", Zone: "z"}}, t0); err != nil {
		t.Fatal(err)
	}
	check("older", "the state's mirror "+mirror+" holds an older table (a write cut short); rewriting it from "+l.path, func() {
		b, err := os.ReadFile(older)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(mirror, b, 0o600); err != nil {
			t.Fatal(err)
		}
	})
	if _, logs, err := l.openLogged(t); err != nil || logs != "" {
		t.Errorf("a sound pair: err %v, log %q; want nothing to say", err, logs)
	}
}

// TestRestoreFailureRefusesToOpen: when the copy to restore cannot be
// written, Open fails naming what it found and changes nothing on disk
// (the allocator does not run on one copy).
func TestRestoreFailureRefusesToOpen(t *testing.T) {
	l := newMirrorLab(t)
	if err := os.Remove(l.path); err != nil {
		t.Fatal(err)
	}
	_, _, err := l.openLogged(t, WithWriteHook(func(s atomicfile.Step) error {
		if s == atomicfile.StepWriteAll {
			return errors.New("disk full")
		}
		return nil
	}))
	if err == nil || !strings.Contains(err.Error(), "restoring it from its mirror") || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("err = %v, want the failed restore", err)
	}
	if _, err := os.Stat(l.path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the state file: %v, want still missing", err)
	}
	if b, err := os.ReadFile(MirrorPath(l.path)); err != nil || !bytes.Equal(b, l.good) {
		t.Errorf("the mirror changed (err %v)", err)
	}
	// Leftovers of the failed write are cleaned at the next Open, which
	// restores the state file.
	if _, _, err := l.openLogged(t); err != nil {
		t.Fatal(err)
	}
	sameCopies(t, l.path)
	if ents, _ := os.ReadDir(filepath.Dir(l.path)); len(ents) != 2 {
		t.Errorf("the state's directory holds %d entries, want the state file and its mirror", len(ents))
	}
}
