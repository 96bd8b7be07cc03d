package audit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
)

// liveLog is a running writer with retention over a log of several files
// that nothing may be removed from until allow is set (as the proxy holds
// files until the SIEM has them).
func liveLog(t *testing.T) (dir string, w *Writer, key Trust, allow *atomic.Bool) {
	t.Helper()
	dir = t.TempDir()
	k := newKey(t)
	allow = new(atomic.Bool)
	w = openLog(t, dir, k, WithMaxFileSize(4<<10), WithCheckpointEvery(5),
		WithRetention(Retention{MaxBytes: 16 << 10, Removable: func(string) (uint64, bool) { return 1 << 62, allow.Load() }}))
	t.Cleanup(func() { w.Close() })
	for i := 0; i < 20; i++ {
		writeSession(t, w, fmt.Sprintf("s%d", i), 2)
	}
	if _, err := w.Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, n := logBytes(t, dir); n < 5 {
		t.Fatalf("the log has %d files, want more for the test", n)
	}
	return dir, w, trustOf(k), allow
}

// onFirstOpen sets openHook to run f (once) when a Reader first opens a
// file, after Verify listed the directory.
func onFirstOpen(t *testing.T, f func(name string)) {
	t.Helper()
	var done atomic.Bool
	openHook = func(name string) {
		if done.CompareAndSwap(false, true) {
			f(name)
		}
	}
	t.Cleanup(func() { openHook = nil })
}

// Verify on a live log whose retention removes the oldest file between
// Verify's listing and its open of that file: the gate removed it as it
// should (after a signed log-pruned record), so Verify lists again and
// verifies the log from the new oldest file, a pruned start, instead of
// failing on the missing file. The removal is the writer's own, made in
// the hook.
func TestVerifyLiveLogPrunedUnderIt(t *testing.T) {
	dir, w, trust, allow := liveLog(t)
	onFirstOpen(t, func(name string) {
		if name != FileName(0) {
			t.Errorf("first open of %s, want %s", name, FileName(0))
		}
		allow.Store(true)
		// The retention runs at every rotation: the gate goes on
		// logging until it has removed the file.
		for i := 0; ; i++ {
			if _, err := os.Stat(fileOf(t, dir, 0)); errors.Is(err, os.ErrNotExist) {
				break
			}
			if i == 100 {
				t.Fatalf("the retention did not remove %s", name)
			}
			writeSession(t, w, fmt.Sprintf("live%d", i), 2)
			w.Checkpoint(context.Background())
		}
	})
	rep, err := Verify(dir, trust)
	if err != nil {
		t.Fatalf("Verify of a live log whose oldest file the gate pruned while Verify ran: %v", err)
	}
	if rep.Restarts != 1 || rep.PrunedFiles == 0 || rep.FirstSeq == 0 {
		t.Errorf("report: %d restarts, %d pruned files, first seq %d; want 1 restart and a log that starts after the pruned files",
			rep.Restarts, rep.PrunedFiles, rep.FirstSeq)
	}
}

// Files that vanish otherwise are still errors, named: a file other than
// the oldest, and the oldest removed without the gate's signed record of
// it (Verify starts over, and then finds that start unexplained).
func TestVerifyLiveLogFileVanished(t *testing.T) {
	cases := []struct {
		name   string
		remove uint64
		want   string // in the error
		file   string // the Problem's file
	}{
		{"a middle file", 2, "audit-00000002.log was listed, then gone when verify came to read it, and audit-00000000.log, older, is still there", FileName(2)},
		{"the oldest, not by retention", 0, "earlier files are missing and no log-pruned record of this log names them", FileName(1)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir, _, trust, _ := liveLog(t)
			onFirstOpen(t, func(string) {
				if err := os.Remove(fileOf(t, dir, tc.remove)); err != nil {
					t.Error(err)
				}
			})
			_, err := Verify(dir, trust)
			var p *Problem
			if !errors.As(err, &p) || !errors.Is(err, ErrFiles) || p.File != tc.file || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Verify: %v; want a problem in %s wrapping %v saying %q", err, tc.file, ErrFiles, tc.want)
			}
			t.Logf("verify: %v", err)
		})
	}
}
