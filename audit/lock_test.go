package audit

import (
	"errors"
	"testing"
)

// One Writer per log directory: a second Open while the first is open (a
// second otgate-proxy started by hand beside the service) would append at
// the same offsets and overwrite the first one's records (the log then
// fails Verify: evidence lost). It is refused; once the first is closed
// the directory opens again.
func TestOpenRefusesADirectoryInUse(t *testing.T) {
	dir := t.TempDir()
	key := newKey(t)
	w := openLog(t, dir, key)
	writeSession(t, w, "a", 1)
	if w2, err := Open(dir, key, WithLogID("test-log")); !errors.Is(err, ErrInUse) {
		if err == nil {
			w2.Close()
		}
		t.Fatalf("a second Open of a directory in use: %v, want ErrInUse", err)
	}
	writeSession(t, w, "b", 1)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	w = openLog(t, dir, key)
	writeSession(t, w, "c", 1)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	tr := trustOf(key)
	tr.RequireSealed = true
	if _, err := Verify(dir, tr); err != nil {
		t.Fatal(err)
	}
}
