package audit

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/otgate/otgate/internal/atomicfile"
)

// ErrClosed is returned by appends to a closed Writer.
var ErrClosed = errors.New("audit log closed")

// ErrInUse: another Writer has the log directory open (only one may: two
// would write over each other's records).
var ErrInUse = errors.New("audit log directory in use by another writer")

// Event types the Writer itself appends; Append refuses them, so a record
// of these types is always the log's own.
const (
	// EventLogClosed is appended by Close and immediately signed by the
	// final checkpoint: together they seal the log (see Report.End).
	EventLogClosed = "log-closed"
	// EventLogRecovered is appended by Open when the log did not end
	// sealed: after a crash, a power cut or a truncation. Its reason says
	// where the log ended and what (if anything) was truncated.
	EventLogRecovered = "log-recovered"
)

// appendMode tells appendAny who appends.
type appendMode uint8

const (
	appendUser     appendMode = 0
	appendInternal appendMode = 1 // the writer's own record: allowed while Close seals
	appendNoRotate appendMode = 2 // the seal's checkpoint stays in the file of what it seals
)

// Position says where a record was written.
type Position struct {
	File   string
	Offset int64
	Seq    uint64
	Hash   Hash
}

// Writer appends records to a log directory. It is safe for concurrent use.
type Writer struct {
	dir    string
	lock   *os.File // the directory, flocked while the Writer is open
	cfg    config
	signer crypto.Signer
	keyID  string
	logID  string

	mu       sync.Mutex
	cond     *sync.Cond
	f        *os.File
	fileIdx  uint64
	fileName string
	fileSize int64
	nextSeq  uint64
	head     Hash
	written  uint64 // logical bytes written, across files
	durable  uint64 // logical bytes known fsynced
	syncing  bool
	err      error // sticky: set by a failed write or fsync
	closed   bool
	closing  bool // Close is sealing the log: only its own records go in
	// sealedEnd: the log still ends with the seal of an earlier Close
	// (nothing appended since Open found it so): Close adds nothing.
	sealedEnd bool
	frameBuf  []byte
	recBuf    bytes.Buffer // the record being appended, encoded (under mu)

	// Checkpoint bookkeeping (under mu).
	nextUnsigned  uint64 // first seq not covered by a checkpoint
	nonCP         uint64 // non-checkpoint records appended since Open
	nonCPSigned   uint64 // ... of which covered by the last checkpoint
	pendingSigned uint64 // nonCP snapshot of the checkpoint being appended
	lastCP        Position

	signMu   sync.Mutex // one checkpoint at a time
	trigger  chan struct{}
	done     chan struct{}
	loopDone chan struct{}
	// flushNow asks the flusher for an fsync now (FlushSoon); flushDone
	// is closed when the flusher has stopped (Close).
	flushNow  chan struct{}
	flushDone chan struct{}
	recovered *TornTail
	recovery  string // reason of the log-recovered record Open appended, if any

	// anchor is the last anchor value in the chain (nil: none), under mu;
	// anchorOK says the counter answered at Open (see Anchor), and
	// anchorAt is the value Open left it at;
	// anchorAlarm is the anchor-mismatch Open recorded, if any, and
	// anchorUnavail the anchor-unavailable.
	anchor        *uint64
	anchorOK      bool
	anchorAt      uint64
	anchorMaybe   uint64 // a periodic advance to this value got no answer
	anchorFailing string // why the last periodic advance was not made
	anchorAlarm   string
	anchorUnavail string

	// pruneTrigger asks the loop to apply the retention (a rotation);
	// pruneHeld says why the oldest file cannot go yet (under mu);
	// prunePending is prune's own (the loop goroutine's).
	pruneTrigger chan struct{}
	// anchorDone is closed when Open's anchoring (anchorOpen, run in the
	// background) is over; nil without an anchor.
	anchorDone chan struct{}
	// anchorStop is closed by Close to stop the periodic advances
	// (WithAnchorEvery), and anchorTickDone once they have stopped; nil
	// without them.
	anchorStop     chan struct{}
	anchorTickDone chan struct{}
	pruneHeld      string
	prunePending   prunePending
}

// Open opens the log in dir for appending, creating dir and the first file
// if needed. For an existing log it reads the newest file, checks its
// chain, and truncates a torn tail (keeping the torn bytes in a side file);
// if the log did not end sealed by Close (torn tail or not) it appends a
// "log-recovered" event saying where it ended and what was truncated, so
// the unclean shutdown is itself in the chain and signed by the next
// checkpoint (kicked at once). Any other damage makes Open fail without
// changing anything. signer signs checkpoints. Only one Writer may have
// a log directory open at a time (an flock on the directory, released by
// Close): a second Open fails with ErrInUse.
func Open(dir string, signer crypto.Signer, opts ...Option) (*Writer, error) {
	if signer == nil {
		return nil, errors.New("open audit log: no checkpoint signer")
	}
	cfg := defaultConfig()
	for _, o := range opts {
		o(&cfg)
	}
	keyID, err := KeyID(signer.Public())
	if err != nil {
		return nil, fmt.Errorf("open audit log %s: signer: %w", dir, err)
	}
	if err := atomicfile.MkdirAll(dir, 0o700, syncDir); err != nil {
		return nil, fmt.Errorf("open audit log: %w", err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	w := &Writer{dir: dir, cfg: cfg, signer: signer, keyID: keyID, lock: lock,
		trigger: make(chan struct{}, 1), pruneTrigger: make(chan struct{}, 1), done: make(chan struct{}), loopDone: make(chan struct{}),
		flushNow: make(chan struct{}, 1), flushDone: make(chan struct{})}
	w.cond = sync.NewCond(&w.mu)
	files, err := listFiles(dir)
	if err == nil {
		if len(files) == 0 {
			err = w.create()
		} else {
			err = w.recover(files[len(files)-1])
		}
	}
	if err != nil {
		lock.Close()
		return nil, err
	}
	go w.loop()
	go w.flusher()
	if w.recovery != "" {
		_, end, err := w.appendAny(Event{Type: EventLogRecovered, Reason: w.recovery}, appendInternal)
		if err == nil {
			err = w.waitDurable(end)
		}
		if err != nil {
			w.Close()
			return nil, fmt.Errorf("open audit log %s: record the recovery: %w", dir, err)
		}
		w.kick()
	}
	if w.cfg.anchor != nil {
		// The anchor's round trips to the TPM (a tenth of a second on a
		// slow board) do not hold up the gate's start: records appended
		// meanwhile are simply before this run's log-anchored event.
		// AnchorState and Close wait for it.
		w.anchorDone = make(chan struct{})
		go func() {
			defer close(w.anchorDone)
			if err := w.anchorOpen(); err != nil {
				w.cfg.onError(fmt.Errorf("anchor: %w", err))
			}
		}()
		if w.cfg.anchorEvery > 0 {
			w.anchorStop, w.anchorTickDone = make(chan struct{}), make(chan struct{})
			go w.anchorTicker()
		}
	}
	w.kickPrune()
	return w, nil
}

// create starts a new log with file 0.
func (w *Writer) create() error {
	w.logID = w.cfg.logID
	if w.logID == "" {
		var b [16]byte
		if _, err := rand.Read(b[:]); err != nil {
			return fmt.Errorf("new audit log id: %w", err)
		}
		w.logID = hex.EncodeToString(b[:])
	}
	g := Genesis(w.logID)
	return w.startFile(0, g, Rotation{LogID: w.logID, File: 0, PrevHead: g[:]})
}

// startFile creates file idx durably, holding only its rotation record,
// and makes it current. prev is the hash the rotation record chains to.
func (w *Writer) startFile(idx uint64, prev Hash, rot Rotation) error {
	enc, err := encodeBody(rot)
	if err != nil {
		return err
	}
	rec := Record{Seq: w.nextSeq, Time: TimestampOf(w.cfg.now()), Prev: prev[:], Kind: KindRotation, Body: enc, Dev: w.cfg.dev}
	payload, err := encodeRecord(&rec)
	if err != nil {
		return fmt.Errorf("encode rotation record: %w", err)
	}
	content := appendFrame([]byte(fileMagic), payload)
	name := FileName(idx)
	f, err := createDurable(w.dir, name, content)
	if err != nil {
		return fmt.Errorf("start audit log file: %w", err)
	}
	if w.f != nil {
		w.f.Close()
	}
	w.f, w.fileIdx, w.fileName, w.fileSize = f, idx, name, int64(len(content))
	w.written += uint64(len(content))
	w.durable = w.written
	w.nextSeq++
	w.nonCP++
	w.head = sha256.Sum256(payload)
	return nil
}

// LogID returns the id of the log.
func (w *Writer) LogID() string { return w.logID }

// KeyID returns the id of the checkpoint signing key.
func (w *Writer) KeyID() string { return w.keyID }

// DevMode reports whether the Writer marks its records as written in dev
// mode (WithDevMode), and why.
func (w *Writer) DevMode() (reason string, dev bool) { return w.cfg.devReason, w.cfg.dev }

// Recovered returns the torn tail Open truncated, or nil.
func (w *Writer) Recovered() *TornTail { return w.recovered }

// Recovery returns the reason of the log-recovered record Open appended
// because the log did not end sealed, or "" after a clean close (or for
// a new log).
func (w *Writer) Recovery() string { return w.recovery }

// Append writes b and returns once it is durable (fsynced). Concurrent
// callers share fsyncs. ctx is checked before writing only: once written,
// Append waits for the fsync. On error the record may or may not be in the
// log; the caller must treat the action it records as not logged (the
// proxy refuses the session).
func (w *Writer) Append(ctx context.Context, b Body) (Position, error) {
	if err := ctx.Err(); err != nil {
		return Position{}, fmt.Errorf("append %s: %w", b.Kind(), err)
	}
	pos, end, err := w.append(b)
	if err != nil {
		return Position{}, err
	}
	if err := w.waitDurable(end); err != nil {
		return Position{}, err
	}
	return pos, nil
}

// AppendBuffered writes b without waiting for an fsync; see the package
// documentation for when it becomes durable.
func (w *Writer) AppendBuffered(b Body) (Position, error) {
	pos, _, err := w.append(b)
	return pos, err
}

// FlushSoon asks for every record written so far to be made durable now
// rather than at the next FlushInterval, and returns at once: an fsync
// starts in the background, at once when none was asked for in the last
// 200 ms (flushSoonGap), else at the end of that gap, so what a power cut
// can lose shrinks from a flush interval to at most the gap and one
// fsync, without anyone waiting for it. Requests made meanwhile share
// that fsync. The proxy calls it after the record of a
// request that may change a device's state, which is forwarded without
// waiting (see the Modbus inspector's OutcomeForwarded).
func (w *Writer) FlushSoon() {
	select {
	case w.flushNow <- struct{}{}:
	default: // one is already asked for: it covers this record too
	}
}

// Sync returns once every record written so far is durable.
func (w *Writer) Sync() error {
	w.mu.Lock()
	end := w.written
	w.mu.Unlock()
	return w.waitDurable(end)
}

func (w *Writer) append(b Body) (Position, uint64, error) {
	switch v := b.(type) {
	case Rotation, *Rotation:
		return Position{}, 0, fmt.Errorf("append: %w: rotation records are written by the log itself", ErrInvalidBody)
	case Checkpoint, *Checkpoint:
		return Position{}, 0, fmt.Errorf("append: %w: use Writer.Checkpoint", ErrInvalidBody)
	case Event:
		if err := userEvent(v); err != nil {
			return Position{}, 0, err
		}
	case SessionStart, *SessionStart:
		if err := w.checkReserve(); err != nil {
			return Position{}, 0, fmt.Errorf("append %s: %w", b.Kind(), err)
		}
	case *Event:
		if v != nil {
			if err := userEvent(*v); err != nil {
				return Position{}, 0, err
			}
		}
	}
	return w.appendAny(b, appendUser)
}

// userEvent refuses the events only the log itself writes, and an anchor
// value in any other.
func userEvent(e Event) error {
	switch e.Type {
	case EventLogClosed, EventLogRecovered, EventLogAnchored, EventAnchorMismatch, EventAnchorUnavailable, EventLogPruned:
		return fmt.Errorf("append: %w: %q events are written by the log itself", ErrInvalidBody, e.Type)
	}
	if e.Anchor != nil || e.Pruned != nil {
		return fmt.Errorf("append: %w: only the log itself records anchor values and removed files", ErrInvalidBody)
	}
	return nil
}

func (w *Writer) appendAny(b Body, mode appendMode) (Position, uint64, error) {
	bodyBuf := bodyBufs.Get().(*bytes.Buffer)
	defer func() {
		if bodyBuf.Cap() <= maxPooledBuf {
			bodyBufs.Put(bodyBuf)
		}
	}()
	enc, err := encodeBodyTo(b, bodyBuf)
	if err != nil {
		return Position{}, 0, fmt.Errorf("append: %w", err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(mode); err != nil {
		return Position{}, 0, err
	}
	for w.fileSize >= w.cfg.maxFileSize && mode&appendNoRotate == 0 {
		if w.syncing {
			w.cond.Wait()
			if err := w.usable(mode); err != nil {
				return Position{}, 0, err
			}
			continue
		}
		if err := w.rotate(); err != nil {
			return Position{}, 0, err
		}
	}
	rec := Record{Seq: w.nextSeq, Time: TimestampOf(w.cfg.now()), Prev: w.head[:], Kind: b.Kind(), Body: enc, Dev: w.cfg.dev}
	w.recBuf.Reset()
	if enc, ok := appendRecordCBOR(w.recBuf.AvailableBuffer(), &rec); ok {
		w.recBuf.Write(enc) // in place when it fitted
	} else if err := bufEncMode.MarshalToBuffer(&rec, &w.recBuf); err != nil {
		return Position{}, 0, fmt.Errorf("append %s: encode: %w", b.Kind(), err)
	}
	payload := w.recBuf.Bytes()
	if len(payload) > MaxRecordSize {
		return Position{}, 0, fmt.Errorf("append %s: record of %d bytes exceeds the maximum %d", b.Kind(), len(payload), MaxRecordSize)
	}
	w.frameBuf = appendFrame(w.frameBuf[:0], payload)
	if w.recBuf.Cap() > maxPooledBuf {
		w.recBuf = bytes.Buffer{} // a rare large record: do not keep its buffer
	}
	if _, err := w.f.WriteAt(w.frameBuf, w.fileSize); err != nil {
		// Best effort: remove a partial frame now; Open would anyway.
		_ = w.f.Truncate(w.fileSize)
		w.fail(fmt.Errorf("write %s at offset %d: %w", w.fileName, w.fileSize, err))
		return Position{}, 0, w.err
	}
	pos := Position{File: w.fileName, Offset: w.fileSize, Seq: rec.Seq, Hash: sha256.Sum256(payload)}
	w.fileSize += int64(len(w.frameBuf))
	w.written += uint64(len(w.frameBuf))
	w.nextSeq++
	w.head = pos.Hash
	w.sealedEnd = false
	switch v := b.(type) {
	case Checkpoint:
		w.nextUnsigned = v.Last + 1
		w.nonCPSigned = w.pendingSigned
		w.lastCP = pos
	case SessionEnd:
		w.nonCP++
		w.kick()
	case Event:
		if v.Anchor != nil {
			a := *v.Anchor
			w.anchor = &a
		}
		w.nonCP++
		if w.nonCP-w.nonCPSigned >= w.cfg.checkpointEvery {
			w.kick()
		}
	default:
		w.nonCP++
		if w.nonCP-w.nonCPSigned >= w.cfg.checkpointEvery {
			w.kick()
		}
	}
	return pos, w.written, nil
}

func (w *Writer) usable(mode appendMode) error {
	if w.err != nil {
		return w.err
	}
	if w.closed || (w.closing && mode&appendInternal == 0) {
		return ErrClosed
	}
	return nil
}

func (w *Writer) fail(err error) {
	if w.err == nil {
		w.err = fmt.Errorf("audit log %s unusable, no further records can be written: %w", w.dir, err)
	}
	w.cond.Broadcast()
}

// waitDurable returns once logical offset end is fsynced. The first waiter
// that finds no fsync running runs one for everybody written so far.
func (w *Writer) waitDurable(end uint64) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.durable < end {
		if w.err != nil {
			return w.err
		}
		if w.syncing {
			w.cond.Wait()
			continue
		}
		w.syncing = true
		target, f, name := w.written, w.f, w.fileName
		w.mu.Unlock()
		err := f.Sync()
		w.mu.Lock()
		w.syncing = false
		if err != nil {
			w.fail(fmt.Errorf("fsync %s: %w", name, err))
		} else if target > w.durable {
			w.durable = target
		}
		w.cond.Broadcast()
	}
	return nil
}

// rotate closes the current file (fsynced) and starts the next one with a
// rotation record carrying the head. Called with mu held and no fsync
// running.
func (w *Writer) rotate() error {
	if err := w.f.Sync(); err != nil {
		w.fail(fmt.Errorf("fsync %s before rotation: %w", w.fileName, err))
		return w.err
	}
	w.durable = w.written
	rot := Rotation{LogID: w.logID, File: w.fileIdx + 1, PrevHead: append([]byte(nil), w.head[:]...),
		PrevFile: w.fileName, NextUnsigned: w.nextUnsigned, Anchor: w.anchor}
	if err := w.startFile(w.fileIdx+1, w.head, rot); err != nil {
		w.fail(err)
		return w.err
	}
	w.kickPrune()
	return nil
}

func (w *Writer) kickPrune() {
	select {
	case w.pruneTrigger <- struct{}{}:
	default:
	}
}

func (w *Writer) kick() {
	select {
	case w.trigger <- struct{}{}:
	default:
	}
}
