package audit

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Anchor is a counter kept outside the log's storage that only goes
// forward: on the gate, an NV counter in the TPM, through the identity
// service. It is what lets a log that was rolled back be told from one
// that was not, which the log alone cannot do: a copy of the directory
// taken earlier, or a log cut back to an earlier clean close, is a
// perfectly good chain that ends sealed.
//
// With WithAnchor the Writer records, at every Open and every Close, the
// value the counter is about to take (a "log-anchored" event at Open, the
// log-closed event at Close), makes that record durable and signs it (a
// checkpoint; at Close, the seal), and only then advances the counter.
// Only a signed anchor record counts, in Verify and at Open: an unsigned
// one is anybody's who can write the disk, and one appended to a
// rolled-back copy would otherwise hide the rollback (Open would even sign
// it with its next checkpoint). So the log is never behind the counter
// unless it lost records that were durable: Open compares the two and records what
// it finds in an "anchor-mismatch" event (signed by the next checkpoint,
// exported to the SIEM like every record; Close does the same when the
// counter moved under the running log), and Verify with Trust.Anchor
// (the counter's value, read on the device) fails a log that ends behind
// it. A log one step ahead is the benign trace of a stop between the
// record and the advance. Open takes the anchor from the checkpoint of
// the signer's key that signs furthest in the newest file, checking its
// signature and reading again, chained to its head, the records from the
// last position Open noted (one every 256 records) up to the one it names,
// for their anchor values; Open holds no list of the anchor records (one
// checkpoint: if that one does not verify, no anchor record of the file
// counts, which can only raise an alarm, never hide one); the anchor a new
// file's rotation record carries is taken as the previous file's last one
// (Verify checks it against that file, Open reads only the newest).
//
// What it cannot show: records of a run that ended without a clean close
// (a power cut) after that run's last log-anchored event; those already
// end unsealed, and the next Open records the unclean end. WithAnchorEvery
// adds log-anchored events while the log runs, which bounds that to the
// last period.
type Anchor interface {
	// Read returns the counter's value; defined is false when it was never
	// advanced.
	Read() (value uint64, defined bool, err error)
	// Advance advances the counter by one from the value Read returned
	// (from, fromDefined: false when never advanced, which defines it and
	// gives it whatever value the counter starts at) and returns the value
	// it then has; a counter that no longer holds from is left alone and
	// its value returned.
	Advance(from uint64, fromDefined bool) (uint64, error)
}

// WithAnchor anchors the log to a (see Anchor).
func WithAnchor(a Anchor) Option { return func(c *config) { c.anchor = a } }

// WithAnchorEvery also advances the anchor every d while the log runs
// (WithAnchor; d <= 0: only at Open and Close), the same way: a durable
// log-anchored event with the counter's next value, then the advance. It
// narrows what the anchor cannot show: a copy of the log taken while the
// gate ran and put back after a power cut ends behind the counter once an
// advance has come after the copy, so at most the last d of records can
// be taken back unseen (and the unclean end is recorded either way). Each
// advance is a write to the TPM's non-volatile memory, whose endurance is
// finite (typically 100,000 writes or more per location): every 6 hours
// is some 30,000 over 20 years.
func WithAnchorEvery(d time.Duration) Option { return func(c *config) { c.anchorEvery = d } }

// anchorTicker advances the anchor every WithAnchorEvery once Open's
// anchoring is over, until Close stops it (anchorStop).
func (w *Writer) anchorTicker() {
	defer close(w.anchorTickDone)
	select {
	case <-w.anchorDone:
	case <-w.anchorStop:
		return
	}
	t := time.NewTicker(w.cfg.anchorEvery)
	defer t.Stop()
	for {
		select {
		case <-w.anchorStop:
			return
		case <-t.C:
			if err := w.anchorAdvance(); err != nil {
				w.cfg.onError(fmt.Errorf("anchor: %w", err))
			}
		}
	}
}

// anchorAdvance is one periodic advance: it checks the counter is where
// this run left it (anchor-mismatch otherwise), records the next value
// durably, and advances. A counter that does not answer is reported and
// tried again at the next tick; only a failure to write the log is an
// error.
func (w *Writer) anchorAdvance() error {
	ok, at := w.anchorWhere()
	if !ok {
		return nil // unanchored in this run
	}
	a := w.cfg.anchor
	cur, defined, err := a.Read()
	if err == nil && !defined {
		err = errors.New("the counter reads as never advanced")
	}
	if err != nil {
		w.anchorFail(fmt.Errorf("read the anchor counter for the periodic advance: %w", err))
		return nil
	}
	if cur != at {
		if err := w.anchorMismatch(fmt.Sprintf("the device's anchor counter is at %d, but this run left it at %d: "+
			"something other than this log advanced it while the log ran (a copy of this log opened elsewhere on this gate, or the TPM used directly)", cur, at)); err != nil {
			return err
		}
	}
	want := cur + 1
	if _, err := w.appendDurable(Event{Type: EventLogAnchored, Anchor: &want,
		Reason: fmt.Sprintf("periodic anchor: counter %d -> %d", cur, want)}); err != nil {
		return err
	}
	if err := w.signAnchored(); err != nil {
		// Not signed, not advanced: the log is one step ahead, unsigned,
		// and the next tick tries again.
		w.anchorFail(fmt.Errorf("sign the anchor record before the periodic advance: %w", err))
		return nil
	}
	got, err := a.Advance(cur, true)
	if err != nil {
		// The log is one step ahead until the next advance or Close reads
		// the counter where it was: that is the benign trace Verify allows.
		w.mu.Lock()
		w.anchorMaybe = want // the advance may have been made: not a mismatch then
		w.mu.Unlock()
		w.anchorFail(fmt.Errorf("advance the anchor counter from %d: %w", cur, err))
		return nil
	}
	if got != want {
		if err := w.anchorMismatch(fmt.Sprintf("the anchor counter went to %d, not %d: something other than this log advances it", got, want)); err != nil {
			return err
		}
	}
	w.mu.Lock()
	w.anchorAt, w.anchorMaybe, w.anchorFailing = got, 0, ""
	w.mu.Unlock()
	w.kick()
	return nil
}

// anchorFail reports a periodic advance that was not made and keeps the
// reason for AnchorState.
func (w *Writer) anchorFail(err error) {
	w.mu.Lock()
	w.anchorFailing = err.Error()
	w.mu.Unlock()
	w.cfg.onError(fmt.Errorf("anchor: %w; trying again in %s", err, w.cfg.anchorEvery))
}

// anchorWhere returns whether the log is anchored in this run and where
// this run left the counter. A periodic advance whose answer was lost
// (anchorMaybe) and that was made counts as made: the counter reads as
// the value the log recorded for it.
func (w *Writer) anchorWhere() (ok bool, at uint64) {
	w.mu.Lock()
	ok, at, maybe := w.anchorOK, w.anchorAt, w.anchorMaybe
	w.mu.Unlock()
	if !ok || maybe == 0 {
		return ok, at
	}
	// The TPM round trip is made without holding mu (appends go on). A
	// counter that does not answer leaves the question for the next time.
	cur, defined, err := w.cfg.anchor.Read()
	if err != nil {
		return true, at
	}
	w.mu.Lock()
	if defined && cur == maybe {
		w.anchorAt, at = cur, cur
	}
	w.anchorMaybe = 0
	w.mu.Unlock()
	return true, at
}

// Event types of the anchor; like log-closed and log-recovered, only the
// Writer appends them.
const (
	// EventLogAnchored is appended by Open with the value the anchor
	// counter takes for this run of the log.
	EventLogAnchored = "log-anchored"
	// EventAnchorMismatch is appended by Open when the log and the
	// counter disagree: the reason says how and what it means (a
	// rollback, a removed log, another gate's log, a replaced TPM); and
	// by Close when something other than this log advanced the counter
	// while it ran.
	EventAnchorMismatch = "anchor-mismatch"
	// EventAnchorUnavailable is appended by Open when the counter could
	// not be read or advanced: the log runs unanchored until it is opened
	// again.
	EventAnchorUnavailable = "anchor-unavailable"
)

// ErrAnchor: the log and the device's anchor counter (Trust.Anchor)
// disagree.
var ErrAnchor = errors.New("log does not match the device's anchor counter")

// AnchorState says how the log is anchored in this run: Value is the last
// anchor value in the chain (Has false: none), OK whether the counter
// answered at Open (false also without WithAnchor), Alarm the reason of
// the last anchor-mismatch event this run recorded ("" when none),
// Unavailable that of the anchor-unavailable event, and Failing why the
// last periodic advance failed.
type AnchorState struct {
	Value       uint64
	Has         bool
	OK          bool
	Alarm       string
	Unavailable string
	// Failing says why the last periodic advance (WithAnchorEvery) was
	// not made ("" when it was, or none was due yet).
	Failing string
}

// AnchorState returns the log's anchor state, once Open's anchoring (in
// the background) is over.
func (w *Writer) AnchorState() AnchorState {
	if w.anchorDone != nil {
		<-w.anchorDone
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	st := AnchorState{OK: w.anchorOK, Alarm: w.anchorAlarm, Unavailable: w.anchorUnavail, Failing: w.anchorFailing}
	if w.anchor != nil {
		st.Value, st.Has = *w.anchor, true
	}
	return st
}

// signAnchored signs everything up to the log-anchored record just
// appended, durably, before the counter may move: Verify counts an
// anchor value only from a record a verified checkpoint covers (an
// unsigned record is anybody's who can write the disk), so an advance
// made before the signature would leave, after a stop in between, a log
// whose signed anchor is behind the counter.
func (w *Writer) signAnchored() error {
	_, err := w.checkpoint(context.Background(), appendInternal)
	return err
}

// appendDurable appends the log's own event e and waits until it is
// durable.
func (w *Writer) appendDurable(e Event) (Position, error) {
	pos, end, err := w.appendAny(e, appendInternal)
	if err == nil {
		err = w.waitDurable(end)
	}
	if err != nil {
		return Position{}, fmt.Errorf("record %s: %w", e.Type, err)
	}
	return pos, nil
}

// anchorOpen compares the log with the anchor counter, records a
// disagreement, and anchors this run: the log-anchored event with the
// counter's next value, durable, then the advance. Only a failure to write
// the log is an error; a counter that does not answer is recorded
// (anchor-unavailable) and the log runs unanchored.
func (w *Writer) anchorOpen() error {
	a := w.cfg.anchor
	w.mu.Lock()
	var last *uint64
	if w.anchor != nil {
		v := *w.anchor
		last = &v
	}
	w.mu.Unlock()
	cur, defined, err := a.Read()
	if err != nil {
		return w.anchorUnavailable(fmt.Errorf("read the anchor counter: %w", err))
	}
	var alarm, note string
	switch {
	case !defined && last != nil:
		alarm = fmt.Sprintf("this log was last anchored at %d, but the device's anchor counter was never advanced: "+
			"the TPM was cleared or replaced, or this log comes from another gate", *last)
	case defined && last == nil:
		alarm = fmt.Sprintf("the device's anchor counter is at %d, but this log holds no anchor: "+
			"a log this device anchored before was removed or replaced by this one", cur)
	case defined && *last < cur:
		alarm = fmt.Sprintf("the device's anchor counter is at %d, but this log was last anchored at %d: "+
			"the log was rolled back to an earlier copy, or its newest records or files were removed", cur, *last)
	case defined && *last > cur+1:
		alarm = fmt.Sprintf("this log was last anchored at %d, ahead of the device's anchor counter at %d: "+
			"this log comes from another gate, or the counter was replaced", *last, cur)
	case defined && *last == cur+1:
		note = fmt.Sprintf("; the advance to %d recorded before was not made (the gate stopped between the record and the advance)", *last)
	}
	if alarm != "" {
		if err := w.anchorMismatch(alarm); err != nil {
			return err
		}
	}
	var at uint64 // where this run left the counter
	if !defined {
		// The first advance defines the counter and gives it the value
		// the TPM starts counters at: it can only be recorded after.
		v, err := a.Advance(0, false)
		at = v
		if err != nil {
			return w.anchorUnavailable(fmt.Errorf("define the anchor counter: %w", err))
		}
		if _, err := w.appendDurable(Event{Type: EventLogAnchored, Anchor: &v,
			Reason: fmt.Sprintf("log opened; anchor counter established at %d", v)}); err != nil {
			return err
		}
		if err := w.signAnchored(); err != nil {
			w.cfg.onError(fmt.Errorf("anchor: sign the record of the new anchor counter: %w", err))
		}
	} else {
		want := cur + 1
		if _, err := w.appendDurable(Event{Type: EventLogAnchored, Anchor: &want,
			Reason: fmt.Sprintf("log opened; anchor counter %d -> %d%s", cur, want, note)}); err != nil {
			return err
		}
		if err := w.signAnchored(); err != nil {
			return w.anchorUnavailable(fmt.Errorf("sign the anchor record before advancing the counter from %d: %w", cur, err))
		}
		got, err := a.Advance(cur, true)
		if err != nil {
			return w.anchorUnavailable(fmt.Errorf("advance the anchor counter from %d: %w", cur, err))
		}
		at = got
		if got != want {
			if err := w.anchorMismatch(fmt.Sprintf("the anchor counter went to %d, not %d: something other than this log advances it", got, want)); err != nil {
				return err
			}
		}
	}
	w.mu.Lock()
	w.anchorOK, w.anchorAt = true, at
	w.mu.Unlock()
	w.kick()
	return nil
}

// anchorMismatch records an anchor-mismatch (durably), keeps it for
// AnchorState and reports it.
func (w *Writer) anchorMismatch(alarm string) error {
	if _, err := w.appendDurable(Event{Type: EventAnchorMismatch, Reason: alarm}); err != nil {
		return err
	}
	w.mu.Lock()
	w.anchorAlarm = alarm
	w.mu.Unlock()
	w.cfg.onError(fmt.Errorf("ANCHOR MISMATCH: %s", alarm))
	return nil
}

// anchorUnavailable records that the counter did not answer; the log runs
// unanchored in this run.
func (w *Writer) anchorUnavailable(cause error) error {
	reason := cause.Error() + "; the log runs unanchored until it is opened again"
	if _, err := w.appendDurable(Event{Type: EventAnchorUnavailable, Reason: reason}); err != nil {
		return err
	}
	w.mu.Lock()
	w.anchorUnavail = reason
	w.mu.Unlock()
	w.cfg.onError(fmt.Errorf("anchor: %s", reason))
	w.kick()
	return nil
}

// closingAnchor returns the anchor value Close's log-closed event records
// and the advance to make once that event is durable; nil, nil when the
// log runs unanchored or the counter does not answer (reported through
// the error handler: the seal goes on without it). alarm is not "" when
// the counter is not where this run left it: something other than this
// log advanced it while the log ran (another copy of the log opened on
// the gate, the TPM used directly); Close records it before the seal.
func (w *Writer) closingAnchor() (anchor *uint64, advance func(), alarm string) {
	ok, at := w.anchorWhere()
	if !ok {
		return nil, nil, ""
	}
	a := w.cfg.anchor
	cur, defined, err := a.Read()
	if err == nil && !defined {
		err = errors.New("the counter reads as never advanced")
	}
	if err != nil {
		w.cfg.onError(fmt.Errorf("anchor: read the anchor counter at close: %w; the seal is not anchored", err))
		return nil, nil, ""
	}
	if cur != at {
		alarm = fmt.Sprintf("the device's anchor counter is at %d at close, but this run left it at %d: "+
			"something other than this log advanced it while the log ran (a copy of this log opened elsewhere on this gate, or the TPM used directly)", cur, at)
	}
	want := cur + 1
	return &want, func() {
		got, err := a.Advance(cur, true)
		switch {
		case err != nil:
			w.cfg.onError(fmt.Errorf("anchor: advance the anchor counter from %d at close: %w; the next open finds the log one step ahead", cur, err))
		case got != want:
			w.cfg.onError(fmt.Errorf("anchor: the anchor counter went to %d at close, not %d", got, want))
		}
	}, alarm
}
