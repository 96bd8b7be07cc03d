package atomicfile

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestWriteReplacesAndCleanRemovesLeftovers(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.cbor")
	if err := Write(path, []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A crash after the first half of the data leaves a temp file and the
	// old content.
	err := WriteHooked(path, []byte("two!"), 0o600, func(s Step) error {
		if s == StepWriteHalf {
			return ErrCrash
		}
		return nil
	})
	if !errors.Is(err, ErrCrash) {
		t.Fatalf("err = %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "one" {
		t.Fatalf("content %q after an interrupted write, want the old one", b)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 2 {
		t.Fatalf("want the file and one leftover temp file, got %d entries", len(ents))
	}
	other := filepath.Join(dir, "other")
	if err := os.WriteFile(other, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Clean(path); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 2 || ents[0].Name() != "other" || ents[1].Name() != "state.cbor" {
		t.Fatalf("after Clean: %v", ents)
	}
	if err := Write(path, []byte("two!"), 0o640); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(path)
	if b, _ := os.ReadFile(path); string(b) != "two!" || st.Mode().Perm() != 0o640 {
		t.Fatalf("content %q mode %v", b, st.Mode())
	}
}
