package audit

import (
	"os"
	"path/filepath"
	"testing"
)

// Verify lists the first MaxListedRecoveries log-recovered records and
// counts the rest: a log with any number of them (a forged one) does not
// grow its report without bound.
func TestVerifyBoundsTheListedRecoveries(t *testing.T) {
	old := MaxListedRecoveries
	MaxListedRecoveries = 3
	t.Cleanup(func() { MaxListedRecoveries = old })

	dir := t.TempDir()
	key := newKey(t)
	const restarts = 5
	for i := 0; i <= restarts; i++ {
		w := openLog(t, dir, key)
		writeSession(t, w, "s", 1)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if i == restarts {
			break
		}
		// Cut the seal (the log-closed record and its checkpoint): the
		// next open finds an unclean shutdown and records it.
		es := entries(t, dir)
		n := len(es) - 1
		for n >= 0 {
			if ev, ok := es[n].Body.(Event); ok && ev.Type == EventLogClosed {
				break
			}
			n--
		}
		if n < 0 || n < len(es)-2 {
			t.Fatalf("no log-closed seal among the last two records")
		}
		if err := os.Truncate(filepath.Join(dir, es[n].File), es[n].Offset); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := Verify(dir, trustOf(key))
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Recoveries) != 3 || rep.RecoveriesNotListed != restarts-3 {
		t.Fatalf("%d recoveries listed, %d not listed; want 3 and %d", len(rep.Recoveries), rep.RecoveriesNotListed, restarts-3)
	}
	for i := 1; i < len(rep.Recoveries); i++ {
		if rep.Recoveries[i].Seq <= rep.Recoveries[i-1].Seq {
			t.Fatalf("recoveries not the first ones in order: %+v", rep.Recoveries)
		}
	}
}
