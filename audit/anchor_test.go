package audit

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// counter is an Anchor with a TPM NV counter's rules: never advanced at
// first, its first advance gives the value the TPM starts counters at
// (start), an advance from a value it no longer holds leaves it alone.
// The TPM-backed one is tested in services/identity (swtpm) and end to
// end in services/proxy; here the log's side of the protocol is tested,
// with failures injected.
type counter struct {
	mu       sync.Mutex
	value    uint64
	defined  bool
	start    uint64
	readErr  error
	advErr   error
	lostErr  error // the advance is made, then this error returned (the answer lost)
	advances int
}

func (c *counter) Read() (uint64, bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.value, c.defined, c.readErr
}

func (c *counter) Advance(from uint64, fromDefined bool) (uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.advErr != nil {
		return 0, c.advErr
	}
	if c.defined != fromDefined || (c.defined && c.value != from) {
		return c.value, nil
	}
	if !c.defined {
		c.value, c.defined = c.start, true
	} else {
		c.value++
	}
	c.advances++
	if c.lostErr != nil {
		return 0, c.lostErr
	}
	return c.value, nil
}

// eventsOf returns the log's events of type typ.
func eventsOf(t *testing.T, dir, typ string) []Event {
	t.Helper()
	var out []Event
	for _, e := range entries(t, dir) {
		if ev, ok := e.Body.(Event); ok && ev.Type == typ {
			out = append(out, ev)
		}
	}
	return out
}

func verifyAnchor(t *testing.T, dir string, trust Trust, value uint64) (*Report, error) {
	t.Helper()
	trust.Anchor = &value
	return Verify(dir, trust)
}

// An anchored log records the counter's value at every open and close,
// durably before the counter moves; it verifies against the counter,
// across rotations and with its oldest files removed.
func TestAnchorOpenClose(t *testing.T) {
	dir := t.TempDir()
	key := newKey(t)
	c := &counter{start: 41}
	w := openLog(t, dir, key, WithAnchor(c), WithMaxFileSize(1500))
	if st := w.AnchorState(); !st.OK || !st.Has || st.Value != 41 || st.Alarm != "" || c.value != 41 {
		t.Fatalf("after the first open: %+v, counter %d; want anchored at 41", st, c.value)
	}
	for _, id := range []string{"a", "b", "c"} {
		writeSession(t, w, id, 3)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	closed := eventsOf(t, dir, EventLogClosed)
	if len(closed) != 1 || closed[0].Anchor == nil || *closed[0].Anchor != 42 || c.value != 42 {
		t.Fatalf("log-closed %+v, counter %d; want anchor 42 and the counter at 42", closed, c.value)
	}
	w = openLog(t, dir, key, WithAnchor(c), WithMaxFileSize(1500))
	for _, id := range []string{"d", "e", "f"} {
		writeSession(t, w, id, 3)
	}
	if st := w.AnchorState(); st.Value != 43 || st.Alarm != "" {
		t.Fatalf("second open: %+v, want 43 and no alarm", st)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if c.value != 44 || c.advances != 4 {
		t.Fatalf("counter %d after %d advances, want 44 after 4", c.value, c.advances)
	}
	anchored := eventsOf(t, dir, EventLogAnchored)
	if len(anchored) != 2 || *anchored[0].Anchor != 41 || *anchored[1].Anchor != 43 || !strings.Contains(anchored[1].Reason, "42 -> 43") {
		t.Fatalf("log-anchored events %+v", anchored)
	}
	rep, err := verifyAnchor(t, dir, trustOf(key), 44)
	if err != nil || !rep.HasAnchor || rep.Anchor != 44 || len(rep.AnchorAlarms) != 0 || rep.End != EndSealed {
		t.Fatalf("verify against the counter: %+v, %v", rep, err)
	}
	if rep.Files < 3 {
		t.Fatalf("the log must span several files, has %d", rep.Files)
	}
	// One step ahead of the counter is a stop between record and
	// advance, not an error; further ahead, or behind, is.
	if _, err := verifyAnchor(t, dir, trustOf(key), 43); err != nil {
		t.Fatalf("one step ahead: %v", err)
	}
	for _, v := range []uint64{45, 42} {
		if _, err := verifyAnchor(t, dir, trustOf(key), v); !errors.Is(err, ErrAnchor) {
			t.Fatalf("log at 44, counter at %d: %v, want ErrAnchor", v, err)
		}
	}
	// Rotation records carry the last anchor: a log whose oldest files
	// were removed still knows where it stands.
	os.Remove(fileOf(t, dir, 0))
	tr := trustOf(key)
	tr.AllowPartial = true
	if rep, err := verifyAnchor(t, dir, tr, 44); err != nil || rep.Anchor != 44 {
		t.Fatalf("partial log: %+v, %v", rep, err)
	}
}

// A log rolled back to an earlier copy ends behind the counter: Verify
// with the counter's value names it, and the next Open records an
// anchor-mismatch that says what happened, then goes on anchored.
func TestAnchorRollbackDetected(t *testing.T) {
	dir := t.TempDir()
	key := newKey(t)
	c := &counter{start: 1}
	w := openLog(t, dir, key, WithAnchor(c))
	writeSession(t, w, "a", 2)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	old := copyDir(t, dir) // anchored at 2, sealed
	w = openLog(t, dir, key, WithAnchor(c))
	writeSession(t, w, "b", 2) // the session someone wants gone
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if c.value != 4 {
		t.Fatalf("counter %d, want 4", c.value)
	}
	// The old copy is a good, sealed chain: only the anchor tells.
	tr := trustOf(key)
	tr.RequireSealed = true
	if _, err := Verify(old, tr); err != nil {
		t.Fatalf("the old copy verifies without the anchor: %v", err)
	}
	_, err := verifyAnchor(t, old, tr, c.value)
	p := wantProblem(t, err, ErrAnchor, FileName(0), -1)
	if !strings.Contains(p.Error(), "counter is at 4, but this log was last anchored at 2") || !strings.Contains(p.Error(), "rolled back") {
		t.Fatalf("rollback problem: %v", p)
	}

	// Put the copy in place, as someone with the disk would, and open it.
	os.RemoveAll(dir)
	if err := os.Rename(old, dir); err != nil {
		t.Fatal(err)
	}
	var handled []string
	w = openLog(t, dir, key, WithAnchor(c), WithErrorHandler(func(err error) { handled = append(handled, err.Error()) }))
	st := w.AnchorState()
	if !strings.Contains(st.Alarm, "counter is at 4, but this log was last anchored at 2") || !st.OK || st.Value != 5 {
		t.Fatalf("anchor state after opening the rolled-back log: %+v", st)
	}
	if len(handled) != 1 || !strings.Contains(handled[0], "ANCHOR MISMATCH") {
		t.Fatalf("error handler got %q, want one ANCHOR MISMATCH", handled)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	rep, err := verifyAnchor(t, dir, tr, c.value)
	if err != nil {
		t.Fatalf("after the recorded mismatch the log is anchored again: %v", err)
	}
	if len(rep.AnchorAlarms) != 1 || !strings.HasPrefix(rep.AnchorAlarms[0].Reason, "anchor-mismatch: the device's anchor counter is at 4") {
		t.Fatalf("verify lists alarms %+v", rep.AnchorAlarms)
	}
}

// The log's last records cut back to the previous clean close (records
// of a later run removed): behind the counter too.
func TestAnchorTruncatedToEarlierClose(t *testing.T) {
	dir := t.TempDir()
	key := newKey(t)
	c := &counter{start: 1}
	w := openLog(t, dir, key, WithAnchor(c))
	writeSession(t, w, "a", 1)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	size := int64(len(mustRead(t, fileOf(t, dir, 0))))
	w = openLog(t, dir, key, WithAnchor(c))
	w.AnchorState() // this run's anchoring (in the background) is in
	writeSession(t, w, "b", 1)
	// A power cut: no Close, and no more background checkpoints (one
	// written after the cut below would leave a hole of zeros). Then the
	// file is cut back to the first close.
	close(w.done)
	<-w.loopDone
	<-w.flushDone
	if err := os.Truncate(fileOf(t, dir, 0), size); err != nil {
		t.Fatal(err)
	}
	w.f.Close()
	tr := trustOf(key)
	tr.RequireSealed = true
	if _, err := Verify(dir, tr); err != nil {
		t.Fatalf("cut back to a clean close, the log verifies sealed without the anchor: %v", err)
	}
	_, err := verifyAnchor(t, dir, tr, c.value)
	wantProblem(t, err, ErrAnchor, FileName(0), -1)
}

// The gate stopped between the record of an advance and the advance: the
// log is one step ahead, which is no alarm; the next open makes the
// advance and says so.
func TestAnchorStopBetweenRecordAndAdvance(t *testing.T) {
	dir := t.TempDir()
	key := newKey(t)
	c := &counter{start: 10}
	w := openLog(t, dir, key, WithAnchor(c))
	w.AnchorState() // the open's anchoring is in before the TPM goes
	writeSession(t, w, "a", 1)
	c.advErr = errors.New("TPM gone")
	var handled []string
	w.cfg.onError = func(err error) { handled = append(handled, err.Error()) }
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if c.value != 10 || len(handled) != 1 || !strings.Contains(handled[0], "one step ahead") {
		t.Fatalf("counter %d, handler %q", c.value, handled)
	}
	if _, err := verifyAnchor(t, dir, trustOf(key), c.value); err != nil {
		t.Fatalf("one step ahead: %v", err)
	}
	c.advErr = nil
	w = openLog(t, dir, key, WithAnchor(c))
	st := w.AnchorState()
	if st.Alarm != "" || st.Value != 11 || c.value != 11 {
		t.Fatalf("after the lost advance: %+v, counter %d; want 11, no alarm", st, c.value)
	}
	anchored := eventsOf(t, dir, EventLogAnchored)
	if !strings.Contains(anchored[len(anchored)-1].Reason, "the advance to 11 recorded before was not made") {
		t.Fatalf("log-anchored reason %q", anchored[len(anchored)-1].Reason)
	}
	w.Close()
}

// The whole log directory removed (a new log on a device whose counter
// was advanced before), and a log moved to another gate (its counter
// never advanced, or far behind): each recorded at open.
func TestAnchorLogReplaced(t *testing.T) {
	key := newKey(t)
	c := &counter{start: 5}
	dir := t.TempDir()
	w := openLog(t, dir, key, WithAnchor(c))
	writeSession(t, w, "a", 1)
	w.Close()

	fresh := filepath.Join(t.TempDir(), "audit")
	w = openLog(t, fresh, key, WithAnchor(c))
	if st := w.AnchorState(); !strings.Contains(st.Alarm, "counter is at 6, but this log holds no anchor") {
		t.Fatalf("new log on an anchored device: %+v", st)
	}
	w.Close()

	far := &counter{start: 1}
	far.Advance(0, false)
	w = openLog(t, dir, key, WithAnchor(far))
	if st := w.AnchorState(); !strings.Contains(st.Alarm, "last anchored at 6, ahead of the device's anchor counter at 1") {
		t.Fatalf("log ahead of the counter: %+v", st)
	}
	w.Close() // anchored at 2, closed at 3

	other := &counter{start: 1}
	w = openLog(t, dir, key, WithAnchor(other))
	if st := w.AnchorState(); !strings.Contains(st.Alarm, "last anchored at 3, but the device's anchor counter was never advanced") || st.Value != 1 {
		t.Fatalf("log on a device that never anchored: %+v", st)
	}
	w.Close()
}

// A counter that does not answer: the open records it and the log works,
// unanchored; Verify lists it.
func TestAnchorUnavailable(t *testing.T) {
	dir := t.TempDir()
	key := newKey(t)
	c := &counter{start: 1, readErr: errors.New("identity service down")}
	w := openLog(t, dir, key, WithAnchor(c))
	st := w.AnchorState()
	if st.OK || !strings.Contains(st.Unavailable, "identity service down; the log runs unanchored") {
		t.Fatalf("state %+v", st)
	}
	writeSession(t, w, "a", 1)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if closed := eventsOf(t, dir, EventLogClosed); closed[0].Anchor != nil || c.advances != 0 {
		t.Fatalf("an unanchored run anchored its close: %+v, %d advances", closed, c.advances)
	}
	rep, err := Verify(dir, trustOf(key))
	if err != nil || len(rep.AnchorAlarms) != 1 || !strings.HasPrefix(rep.AnchorAlarms[0].Reason, "anchor-unavailable: ") || rep.HasAnchor {
		t.Fatalf("verify: %+v, %v", rep, err)
	}
}

// Only the log writes anchor records.
func TestAnchorEventsAreTheLogsOwn(t *testing.T) {
	w := openLog(t, t.TempDir(), newKey(t))
	defer w.Close()
	v := uint64(99)
	for _, e := range []Event{{Type: EventLogAnchored}, {Type: EventAnchorMismatch}, {Type: EventAnchorUnavailable}, {Type: "login", Anchor: &v}} {
		if _, err := w.Append(context.Background(), e); !errors.Is(err, ErrInvalidBody) {
			t.Errorf("append %+v: %v, want ErrInvalidBody", e, err)
		}
	}
}

// Something other than this log advancing the counter while the log runs
// (a copy of the log directory opened elsewhere on the gate, the TPM used
// directly) is recorded at Close, in an anchor-mismatch event before the
// seal: the close then anchors the log where the counter is, and without
// the record nothing in this log would say the counter moved under it.
func TestAnchorMovedWhileOpenRecordedAtClose(t *testing.T) {
	dir := t.TempDir()
	key := newKey(t)
	c := &counter{start: 7}
	w := openLog(t, dir, key, WithAnchor(c))
	w.AnchorState() // the open's anchoring is in before the counter moves
	writeSession(t, w, "a", 2)
	c.mu.Lock()
	c.value += 3 // a fork of the log opened and closed twice meanwhile
	c.mu.Unlock()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	alarms := eventsOf(t, dir, EventAnchorMismatch)
	if len(alarms) != 1 || !strings.Contains(alarms[0].Reason, "at 10 at close, but this run left it at 7") {
		t.Fatalf("anchor-mismatch records %+v, want one saying the counter moved from 7 to 10", alarms)
	}
	rep, err := verifyAnchor(t, dir, trustOf(key), 11)
	if err != nil || rep.End != EndSealed || rep.Anchor != 11 || len(rep.AnchorAlarms) != 1 {
		t.Fatalf("verify: %+v, %v", rep, err)
	}
}

// jumpy advances its counter twice on its first advance (something else
// advanced it right then).
type jumpy struct {
	*counter
	jumped bool
}

func (j *jumpy) Advance(from uint64, fromDefined bool) (uint64, error) {
	v, err := j.counter.Advance(from, fromDefined)
	if err == nil && !j.jumped {
		j.jumped = true
		v, err = j.counter.Advance(v, true)
	}
	return v, err
}

// The counter going further than this log's advance at Open is recorded
// then, once: Close compares the counter with where Open left it, and
// does not report the same again.
func TestAnchorJumpAtOpenRecordedOnce(t *testing.T) {
	dir := t.TempDir()
	key := newKey(t)
	c := &counter{start: 5}
	w := openLog(t, dir, key, WithAnchor(c))
	if err := w.Close(); err != nil { // the counter at 6
		t.Fatal(err)
	}
	w = openLog(t, dir, key, WithAnchor(&jumpy{counter: c}))
	writeSession(t, w, "a", 1)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	alarms := eventsOf(t, dir, EventAnchorMismatch)
	if len(alarms) != 1 || !strings.Contains(alarms[0].Reason, "went to 8, not 7") {
		t.Fatalf("anchor-mismatch records %+v, want the one of Open only", alarms)
	}
	closed := eventsOf(t, dir, EventLogClosed)
	if len(closed) != 2 || closed[1].Anchor == nil || *closed[1].Anchor != 9 || c.value != 9 {
		t.Fatalf("log-closed %+v, counter %d", closed, c.value)
	}
	if _, err := verifyAnchor(t, dir, trustOf(key), c.value); err != nil {
		t.Fatal(err)
	}
}
