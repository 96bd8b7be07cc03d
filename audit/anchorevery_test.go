package audit

import (
	"crypto/ecdsa"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// powerCut stops w as a power cut would: no Close, no more background
// work, the file left as it is.
func powerCut(w *Writer) {
	if w.anchorStop != nil {
		close(w.anchorStop)
		<-w.anchorTickDone
	}
	close(w.done)
	<-w.loopDone
	<-w.flushDone
	w.f.Close()
	w.lock.Close()
}

// A copy of the log taken while the gate ran, put back after a power cut:
// with only the open's anchor it verifies against the counter (what the
// anchor alone cannot show); with a periodic advance after the copy it
// ends behind the counter, and reopening it records the mismatch.
func TestAnchorEveryCatchesARestoredCopy(t *testing.T) {
	for _, periodic := range []bool{false, true} {
		dir := t.TempDir()
		key := newKey(t)
		c := &counter{start: 5}
		w := openLog(t, dir, key, WithAnchor(c), WithAnchorEvery(time.Hour)) // advances made by hand below
		if st := w.AnchorState(); !st.OK || st.Value != 5 {
			t.Fatalf("open: %+v", st)
		}
		// A session, then the periodic advance (when on), all durable.
		run := func(id string) {
			writeSession(t, w, id, 2)
			if periodic {
				if err := w.anchorAdvance(); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Sync(); err != nil {
				t.Fatal(err)
			}
		}
		run("a")
		copied := copyDir(t, dir)
		run("b")
		powerCut(w)

		tr := trustOf(key)
		if _, err := verifyAnchor(t, dir, tr, c.value); err != nil {
			t.Errorf("periodic %v: the log as the power cut left it, counter %d: %v", periodic, c.value, err)
		}
		_, err := verifyAnchor(t, copied, tr, c.value)
		if !periodic {
			if err != nil {
				t.Errorf("without periodic advances the copy was expected to pass (the limit WithAnchorEvery narrows): %v", err)
			}
			continue
		}
		if !errors.Is(err, ErrAnchor) || !strings.Contains(err.Error(), "rolled back") {
			t.Fatalf("the copy from before the last periodic advance, counter %d: %v; want ErrAnchor", c.value, err)
		}
		w = openLog(t, copied, key, WithAnchor(c))
		if st := w.AnchorState(); st.Alarm == "" || !strings.Contains(st.Alarm, "rolled back") {
			t.Errorf("the copy reopened: %+v; want an anchor-mismatch", st)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// The ticker advances while the log runs; the periodic records verify,
// sealed, against the counter.
func TestAnchorEveryTicks(t *testing.T) {
	dir, key, c, w, errs := anchoredLog(t, 1, 5*time.Millisecond)
	deadline := time.Now().Add(20 * time.Second)
	for {
		c.mu.Lock()
		n := c.advances
		c.mu.Unlock()
		if n >= 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d advances in 20 s with an advance every 5 ms", n)
		}
		writeSession(t, w, "s", 1)
		time.Sleep(5 * time.Millisecond)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	var periodic int
	for _, ev := range eventsOf(t, dir, EventLogAnchored) {
		if strings.HasPrefix(ev.Reason, "periodic anchor: ") {
			periodic++
		}
	}
	if periodic < 3 {
		t.Errorf("%d periodic log-anchored events, want >= 3", periodic)
	}
	if ms := eventsOf(t, dir, EventAnchorMismatch); len(ms) != 0 {
		t.Errorf("mismatches: %+v", ms)
	}
	tr := trustOf(key)
	tr.RequireSealed = true
	if _, err := verifyAnchor(t, dir, tr, c.value); err != nil {
		t.Errorf("sealed log, counter %d: %v", c.value, err)
	}
	if e := errs(); len(e) != 0 {
		t.Errorf("errors: %q", e)
	}
}

// anchoredLog opens a log anchored to a counter starting at start,
// advancing every every, and returns what the error handler got so far.
func anchoredLog(t *testing.T, start uint64, every time.Duration) (dir string, key *ecdsa.PrivateKey, c *counter, w *Writer, errs func() []string) {
	t.Helper()
	dir, key, c = t.TempDir(), newKey(t), &counter{start: start}
	var mu sync.Mutex
	var got []string
	w = openLog(t, dir, key, WithAnchor(c), WithAnchorEvery(every),
		WithErrorHandler(func(err error) { mu.Lock(); got = append(got, err.Error()); mu.Unlock() }))
	return dir, key, c, w, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), got...)
	}
}

// A periodic advance that fails leaves the log one step ahead (no alarm),
// and is made at the next tick; one made whose answer was lost is no
// alarm either; a counter moved by something else is.
func TestAnchorEveryFailures(t *testing.T) {
	dir, key, c, w, errs := anchoredLog(t, 20, time.Hour)
	w.AnchorState()
	tr := trustOf(key)
	step := func(what string, wantValue uint64) {
		t.Helper()
		if err := w.anchorAdvance(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if st := w.AnchorState(); st.Value != wantValue {
			t.Errorf("%s: log's last anchor %d, want %d", what, st.Value, wantValue)
		}
		if _, err := verifyAnchor(t, dir, tr, c.value); err != nil {
			t.Errorf("%s: counter %d: %v", what, c.value, err)
		}
	}

	c.advErr = errors.New("TPM busy")
	step("advance refused", 21)
	if c.value != 20 {
		t.Fatalf("counter %d after a refused advance", c.value)
	}
	if st := w.AnchorState(); !strings.Contains(st.Failing, "TPM busy") {
		t.Errorf("after a refused advance: %+v, want Failing", st)
	}
	c.advErr = nil
	step("next tick", 21)
	if st := w.AnchorState(); st.Failing != "" {
		t.Errorf("after the advance was made: Failing %q", st.Failing)
	}
	c.lostErr = errors.New("identity service restarted")
	step("answer lost", 22)
	c.lostErr = nil
	c.readErr = errors.New("identity service starting")
	step("counter unreadable after the lost answer", 22)
	c.readErr = nil
	step("after the lost answer", 23)
	if st := w.AnchorState(); st.Alarm != "" {
		t.Fatalf("alarm without a mismatch: %q", st.Alarm)
	}
	if e := errs(); len(e) != 3 || !strings.Contains(e[0], "TPM busy") || !strings.Contains(e[1], "identity service restarted") || !strings.Contains(e[2], "identity service starting") {
		t.Errorf("errors reported: %q", e)
	}

	c.mu.Lock()
	c.value++ // something else advances the counter
	c.mu.Unlock()
	if err := w.anchorAdvance(); err != nil {
		t.Fatal(err)
	}
	if st := w.AnchorState(); !strings.Contains(st.Alarm, "this run left it at 23") {
		t.Errorf("counter moved under the log: %+v", st)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	tr.RequireSealed = true
	if _, err := verifyAnchor(t, dir, tr, c.value); err != nil {
		t.Errorf("sealed, counter %d: %v", c.value, err)
	}
}
