package audit

import (
	"context"
	"fmt"
	"time"
)

// Checkpoint signs the current head and appends the checkpoint durably. If
// nothing but checkpoints was appended since the last one it returns the
// last checkpoint's position. Records appended while the signer works are
// covered by the next checkpoint. A signer failure is returned and leaves
// the log usable.
func (w *Writer) Checkpoint(ctx context.Context) (Position, error) {
	w.signMu.Lock()
	defer w.signMu.Unlock()
	w.mu.Lock()
	if err := w.usable(); err != nil {
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
	pos, end, err := w.appendAny(cp)
	if err != nil {
		return Position{}, err
	}
	if err := w.waitDurable(end); err != nil {
		return Position{}, err
	}
	return pos, nil
}

// loop makes periodic checkpoints and flushes until Close.
func (w *Writer) loop() {
	defer close(w.loopDone)
	cpTick := time.NewTicker(w.cfg.checkpointInterval)
	defer cpTick.Stop()
	flushTick := time.NewTicker(w.cfg.flushInterval)
	defer flushTick.Stop()
	for {
		select {
		case <-w.done:
			return
		case <-w.trigger:
			w.backgroundCheckpoint()
		case <-cpTick.C:
			w.backgroundCheckpoint()
		case <-flushTick.C:
			if err := w.Sync(); err != nil {
				w.cfg.onError(err)
			}
		}
	}
}

func (w *Writer) backgroundCheckpoint() {
	if _, err := w.Checkpoint(context.Background()); err != nil {
		w.cfg.onError(fmt.Errorf("audit checkpoint: %w", err))
	}
}

// Close writes a final checkpoint, fsyncs and closes the log. Appends
// after Close fail with ErrClosed.
func (w *Writer) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.mu.Unlock()
	close(w.done)
	<-w.loopDone
	_, cpErr := w.Checkpoint(context.Background())
	syncErr := w.Sync()
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.syncing {
		w.cond.Wait()
	}
	w.closed = true
	closeErr := w.f.Close()
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
