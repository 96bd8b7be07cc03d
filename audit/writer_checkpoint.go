package audit

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Checkpoint signs the current head and appends the checkpoint durably. If
// nothing but checkpoints was appended since the last one it returns the
// last checkpoint's position. Records appended while the signer works are
// covered by the next checkpoint. A signer failure is returned and leaves
// the log usable.
func (w *Writer) Checkpoint(ctx context.Context) (Position, error) {
	return w.checkpoint(ctx, appendUser)
}

func (w *Writer) checkpoint(ctx context.Context, mode appendMode) (Position, error) {
	w.signMu.Lock()
	defer w.signMu.Unlock()
	w.mu.Lock()
	if err := w.usable(mode); err != nil {
		w.mu.Unlock()
		return Position{}, err
	}
	if w.nonCP == w.nonCPSigned && w.lastCP.File != "" {
		pos := w.lastCP
		w.mu.Unlock()
		return pos, nil
	}
	first, last, head, snap := w.nextUnsigned, w.nextSeq-1, w.head, w.nonCP
	w.mu.Unlock()
	cp, err := signCheckpoint(w.signer, w.keyID, w.logID, first, last, head)
	if err != nil {
		return Position{}, err
	}
	if err := ctx.Err(); err != nil {
		return Position{}, fmt.Errorf("checkpoint: %w", err)
	}
	w.mu.Lock()
	w.pendingSigned = snap
	w.mu.Unlock()
	pos, end, err := w.appendAny(cp, mode)
	if err != nil {
		return Position{}, err
	}
	if err := w.waitDurable(end); err != nil {
		return Position{}, err
	}
	return pos, nil
}

// loop makes periodic checkpoints and applies the retention until Close.
func (w *Writer) loop() {
	defer close(w.loopDone)
	cpTick := time.NewTicker(w.cfg.checkpointInterval)
	defer cpTick.Stop()
	for {
		select {
		case <-w.done:
			return
		case <-w.trigger:
			w.backgroundCheckpoint()
		case <-cpTick.C:
			w.backgroundCheckpoint()
			w.prune()
		case <-w.pruneTrigger:
			w.prune()
		}
	}
}

// flushSoonGap is the least time between two fsyncs FlushSoon asks for:
// an isolated request (an engineer's write) is flushed at once; a stream
// of them (a tool writing many registers a second) shares one fsync every
// gap instead of paying one each, as PostgreSQL's asynchronous commit
// flushes its log every wal_writer_delay (200 ms by default). An fsync
// per Modbus write doubled the gate's CPU per transaction on the 2-core
// benchmark machine; each is a journal commit on the appliance's flash.
const flushSoonGap = 200 * time.Millisecond

// flusher makes buffered records durable every FlushInterval and when
// FlushSoon asks (at once, then at most once every flushSoonGap), until
// Close. It has its own goroutine so that a flush never waits behind a
// checkpoint's signature (a TPM round trip).
func (w *Writer) flusher() {
	defer close(w.flushDone)
	tick := time.NewTicker(w.cfg.flushInterval)
	defer tick.Stop()
	gap := time.NewTimer(flushSoonGap)
	gap.Stop()         // armed by the first requested flush
	soon := w.flushNow // nil while the gap after a requested flush runs
	for {
		select {
		case <-w.done:
			return
		case <-tick.C:
		case <-soon:
			soon = nil
			gap.Reset(flushSoonGap)
		case <-gap.C:
			soon = w.flushNow
			continue
		}
		if err := w.Sync(); err != nil {
			w.cfg.onError(err)
		}
	}
}

func (w *Writer) backgroundCheckpoint() {
	// ErrClosed: Close started sealing; its own checkpoint covers these.
	if _, err := w.Checkpoint(context.Background()); err != nil && !errors.Is(err, ErrClosed) {
		w.cfg.onError(fmt.Errorf("audit checkpoint: %w", err))
	}
}

// Close seals the log: it appends a "log-closed" event (EventLogClosed)
// and a final checkpoint that signs it, as the last two records of the
// newest file, then fsyncs and closes. Appends from the moment Close
// starts fail with ErrClosed, so nothing lands between the two. Verify
// reports a log that ends this way as sealed (EndSealed); any other end
// of the newest file is a crash or a truncation. If the signer fails, the
// log-closed record stays unsigned and Close returns the error. An
// anchored log's log-closed event carries the anchor counter's next value
// and the counter is advanced once that event is durable (see Anchor); a
// counter that something else advanced while the log ran is recorded
// first, in an anchor-mismatch event.
// Calling Close again does nothing.
func (w *Writer) Close() error {
	w.mu.Lock()
	if w.closed || w.closing {
		w.mu.Unlock()
		return nil
	}
	w.closing = true
	w.mu.Unlock()
	if w.anchorStop != nil {
		// A periodic advance under way finishes first: Close reads the
		// counter where it left it.
		close(w.anchorStop)
		<-w.anchorTickDone
	}
	close(w.done)
	<-w.loopDone
	<-w.flushDone
	if w.anchorDone != nil {
		<-w.anchorDone // its records go before the seal
	}
	ctx := context.Background()
	w.mu.Lock()
	already := w.sealedEnd
	w.mu.Unlock()
	var cpErr error
	if !already {
		// The log-closed record may rotate (it is a record like any
		// other); its checkpoint never does, so the seal is the file's
		// last two records.
		closed := Event{Type: EventLogClosed, Reason: "clean shutdown"}
		var advance func()
		var alarm string
		closed.Anchor, advance, alarm = w.closingAnchor()
		if alarm != "" {
			_, _, cpErr = w.appendAny(Event{Type: EventAnchorMismatch, Reason: alarm}, appendInternal)
			w.mu.Lock()
			w.anchorAlarm = alarm
			w.mu.Unlock()
			w.cfg.onError(fmt.Errorf("ANCHOR MISMATCH: %s", alarm))
		}
		if cpErr == nil {
			_, _, cpErr = w.appendAny(closed, appendInternal)
		}
		if cpErr == nil {
			_, cpErr = w.checkpoint(ctx, appendInternal|appendNoRotate)
		}
		if cpErr == nil && advance != nil {
			// The anchor value is durable and signed (the seal) before
			// the counter moves: a stop in between leaves the log one
			// step ahead, never behind.
			advance()
		}
	}
	syncErr := w.Sync()
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.syncing {
		w.cond.Wait()
	}
	w.closed = true
	closeErr := w.f.Close()
	w.lock.Close() // the directory may be opened again
	w.cond.Broadcast()
	switch {
	case syncErr != nil:
		return syncErr
	case cpErr != nil:
		return cpErr
	case closeErr != nil:
		return fmt.Errorf("close %s: %w", w.fileName, closeErr)
	}
	return nil
}
