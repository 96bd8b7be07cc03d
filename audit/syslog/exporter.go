package syslog

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"github.com/otgate/otgate/audit"
)

// Config says what to export where.
type Config struct {
	Dir    string      // the audit log directory
	Cursor string      // path of the persisted cursor
	Addr   string      // receiver host:port
	TLS    *tls.Config // nil: plain TCP; otherwise RFC 5425 TLS

	Hostname string // HOSTNAME field (default: os.Hostname)
	AppName  string // APP-NAME field (default "otgate")
	// Formatters render decoded payloads by protocol (FormatWith): the
	// proxy sends a Modbus transaction as its transcript line.
	Formatters map[string]audit.PayloadFormatter

	Poll       time.Duration // how often to look for new records (default 200 ms)
	Batch      int           // records written before the cursor moves (default 256)
	DrainWait  time.Duration // how long the receiver may take to acknowledge a batch (default 30 s)
	RetryDelay time.Duration // first reconnect delay, doubled up to 30 s (default 500 ms)
	// MinAge holds a record back until it is this old (default 2 s), so
	// that what is exported has been fsynced by the writer's periodic
	// flush (audit.WithFlushInterval, default 1 s): a record lost in a
	// power cut is then never in the SIEM. Negative: no delay.
	MinAge time.Duration
	// StuckRetry is the first retry delay after an error that a
	// reconnection does not fix (a damaged log, a cursor that cannot be
	// written), doubled up to StuckRetryMax (defaults 30 s and 10 min).
	StuckRetry, StuckRetryMax time.Duration

	// OnError hears every failure; the exporter retries each (see Run).
	OnError func(error)
	// OnStatus hears, after every failure, a one-line note saying that
	// the export is held up, since when and why, and "" once it moves
	// again (a batch acknowledged, or the end of the log reached).
	OnStatus func(note string)
	// OnReset hears that the cursor did not belong to the log and was set
	// aside (see Run): where it is kept and why. Default: OnError.
	OnReset func(what string)
}

// EventExportReset is the audit event type under which the proxy records
// a cursor the exporter set aside (Config.OnReset).
const EventExportReset = "syslog-export-reset"

// EventExportGap is the event parameter of the message the exporter sends
// for records the log's retention removed before they were exported (see
// Run): the SIEM learns how many, and which seqs, it will never get.
const EventExportGap = "export-gap"

// EventSessionCut is the event parameter of the message the exporter sends
// after a log-recovered record for each session that was open when the
// gate stopped without a clean shutdown (FormatCut): its end will never
// come.
const EventSessionCut = "session-cut"

// Exporter sends the audit log to a syslog receiver.
type Exporter struct {
	cfg Config
	// heldSince is when the export was first held up by the failures
	// since the last progress (zero: moving); progressed says the
	// current connection made progress.
	heldSince  time.Time
	progressed bool
	// known is what the exporter knows of the open sessions as of the
	// last record it formatted: loaded from the cursor at every
	// (re)connection, saved with it.
	known map[string]Labels
}

// maxKnownSessions bounds the labels kept (and written with every
// cursor): far above the proxy's -max-sessions, so only a log whose
// sessions never end (no end record, no log-closed or log-recovered
// event) reaches it.
const maxKnownSessions = 65536

// New checks cfg and returns an exporter.
func New(cfg Config) (*Exporter, error) {
	if cfg.Dir == "" || cfg.Cursor == "" || cfg.Addr == "" {
		return nil, errors.New("syslog exporter: log directory, cursor path and receiver address are required")
	}
	if cfg.Hostname == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("syslog exporter: hostname: %w", err)
		}
		cfg.Hostname = h
	}
	if cfg.AppName == "" {
		cfg.AppName = "otgate"
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 200 * time.Millisecond
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 256
	}
	if cfg.DrainWait <= 0 {
		cfg.DrainWait = 30 * time.Second
	}
	if cfg.RetryDelay <= 0 {
		cfg.RetryDelay = 500 * time.Millisecond
	}
	if cfg.MinAge == 0 {
		cfg.MinAge = 2 * time.Second
	}
	if cfg.StuckRetry <= 0 {
		cfg.StuckRetry = 30 * time.Second
	}
	if cfg.StuckRetryMax <= 0 {
		cfg.StuckRetryMax = 10 * time.Minute
	}
	cfg.StuckRetryMax = max(cfg.StuckRetryMax, cfg.StuckRetry)
	if cfg.OnError == nil {
		cfg.OnError = func(error) {}
	}
	if cfg.OnStatus == nil {
		cfg.OnStatus = func(string) {}
	}
	if cfg.OnReset == nil {
		onError := cfg.OnError
		cfg.OnReset = func(what string) { onError(errors.New(what)) }
	}
	return &Exporter{cfg: cfg, known: map[string]Labels{}}, nil
}

// Run exports until ctx ends and returns ctx's error. It never gives up:
//
//   - A connection error (receiver down, TLS, a batch not acknowledged in
//     DrainWait, a read error of the log) is retried after RetryDelay,
//     doubled up to 30 s.
//   - An error that a reconnection does not fix (a damaged log, a cursor
//     that cannot be written) is retried after StuckRetry, doubled up to
//     StuckRetryMax, from the cursor, so a repaired log or disk resumes
//     the export where it stopped, with nothing skipped. A damaged record
//     is not skipped: the follower of the audit package has no
//     verifiable point to resume from inside a file, and the records
//     after the damage are exactly what the SIEM copy exists for. The
//     records before it are sent and acknowledged first.
//   - A cursor whose record the log's retention removed is not one that
//     does not belong: the export goes on at the first record after it
//     in the oldest file left, and records removed before they were
//     exported are announced to the receiver (FormatGap), never skipped
//     silently.
//   - A cursor that does not belong to the log (another log id, a
//     different record at its seq, a seq beyond the end of the log, or a
//     file that does not decode: a factory reset, a log replaced or
//     rolled back, records rewritten after a power cut) is set aside, not
//     deleted, as <cursor>.stale-<UTC time>, said through OnReset, and
//     the export starts again from the oldest record on disk. Nothing is
//     lost; the receiver gets again what it may already have, each with
//     its log id, seq and hash, and a rewritten record shows there as a
//     second record with the same seq and another hash.
//
// Every failure goes to OnError, and OnStatus hears when the export is
// held up and when it moves again.
func (x *Exporter) Run(ctx context.Context) error {
	delay, stuckDelay := x.cfg.RetryDelay, x.cfg.StuckRetry
	for {
		x.progressed = false
		err := x.session(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, errReset) {
			continue // from the oldest record, at once
		}
		if x.progressed {
			delay, stuckDelay = x.cfg.RetryDelay, x.cfg.StuckRetry
		}
		wait := delay
		if errors.As(err, new(stuckError)) {
			wait = stuckDelay
			x.cfg.OnError(fmt.Errorf("export to %s STUCK, nothing more goes out until this clears (retrying in %s by itself): %w", x.cfg.Addr, wait, err))
			if stuckDelay *= 2; stuckDelay > x.cfg.StuckRetryMax {
				stuckDelay = x.cfg.StuckRetryMax
			}
		} else {
			x.cfg.OnError(err)
			if delay *= 2; delay > 30*time.Second {
				delay = 30 * time.Second
			}
		}
		x.held(err, wait)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}

// stuckError marks an error that reconnecting does not fix: retried
// slowly.
type stuckError struct{ error }

func (e stuckError) Unwrap() error { return e.error }

func stuck(err error) error { return stuckError{err} }

// errReset says the cursor was set aside: start again at once.
var errReset = errors.New("export cursor reset")

// held reports that the export is held up by err (OnStatus).
func (x *Exporter) held(err error, retry time.Duration) {
	if x.heldSince.IsZero() {
		x.heldSince = time.Now()
	}
	x.cfg.OnStatus(fmt.Sprintf("export to %s held up since %s (next try in %s): %v",
		x.cfg.Addr, x.heldSince.UTC().Format(time.RFC3339), retry.Round(time.Second), err))
}

// moving records progress: a batch was acknowledged or the export reached
// the end of the log. It clears a held-up state (OnStatus "").
func (x *Exporter) moving() {
	x.progressed = true
	if !x.heldSince.IsZero() {
		x.heldSince = time.Time{}
		x.cfg.OnStatus("")
	}
}

// reset sets the cursor aside (see Run) and reports why.
func (x *Exporter) reset(why string) error {
	aside := x.cfg.Cursor + ".stale-" + time.Now().UTC().Format("20060102T150405.000000000Z")
	if err := os.Rename(x.cfg.Cursor, aside); err != nil {
		return stuck(fmt.Errorf("set the export cursor aside (%s): %w", why, err))
	}
	if err := syncDir(filepath.Dir(x.cfg.Cursor)); err != nil {
		return stuck(fmt.Errorf("set the export cursor aside (%s): %w", why, err))
	}
	x.cfg.OnReset(fmt.Sprintf("export cursor %s %s; it is kept as %s, and the export to %s starts again from the oldest record in %s (the receiver may get records it already has, with the same log id, seq and hash)",
		x.cfg.Cursor, why, aside, x.cfg.Addr, x.cfg.Dir))
	return errReset
}

// session runs one connection: resend from the cursor, then follow.
func (x *Exporter) session(ctx context.Context) error {
	cur, hasCur, err := LoadCursor(x.cfg.Cursor)
	var damaged *CursorDamagedError
	if errors.As(err, &damaged) {
		return x.reset(fmt.Sprintf("cannot be used (%v)", damaged.Err))
	}
	if err != nil {
		return stuck(err)
	}
	// The labels of the sessions open at the cursor: the records after
	// it are formatted (again) from there, so a restart or reconnection
	// labels them as the first attempt did.
	x.known = make(map[string]Labels, len(cur.Sessions))
	for id, l := range cur.Sessions {
		x.known[id] = l
	}
	conn, err := x.dial(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	// With a cursor the follower starts at the cursor's own record, which
	// is checked here (same seq, same hash) and not sent again.
	f := audit.NewFollower(x.cfg.Dir, cur.Seq-1, hasCur && cur.Seq > 0)
	resume := hasCur
	var buf bytes.Buffer
	pending := 0
	var last audit.Entry
	// next is the seq the next record sent should have (hasNext: known,
	// from the cursor or a record sent): a record after it means the
	// records in between were removed by the retention before they were
	// sent (the follower crosses only that gap), and the receiver hears
	// of them.
	next, hasNext := cur.Seq+1, hasCur
	flush := func() error {
		if pending == 0 {
			return nil
		}
		if _, err := conn.Write(buf.Bytes()); err != nil {
			return fmt.Errorf("send to %s: %w", x.cfg.Addr, err)
		}
		if err := x.drain(ctx, conn); err != nil {
			return err
		}
		// known is the state after last: every record up to it was
		// remembered as it was formatted.
		if err := SaveCursor(x.cfg.Cursor, Cursor{LogID: f.LogID(), Seq: last.Record.Seq, Hash: last.Hash[:], Sessions: x.known}); err != nil {
			return stuck(err)
		}
		buf.Reset()
		pending = 0
		x.moving()
		return nil
	}
	for {
		e, ok, err := f.TryNext()
		if hasCur && f.LogID() != "" && f.LogID() != cur.LogID {
			return x.reset(fmt.Sprintf("is for log %q, the log in %s is %q", cur.LogID, x.cfg.Dir, f.LogID()))
		}
		if err != nil {
			// What was read before the damage goes out first.
			if ferr := flush(); ferr != nil {
				return ferr
			}
			var p *audit.Problem
			if errors.As(err, &p) {
				return stuck(fmt.Errorf("the audit log in %s is damaged at %w; the export waits there (everything before it was sent) and goes on from there once the log reads again", x.cfg.Dir, err))
			}
			return err
		}
		if !ok {
			if resume && f.LogID() != "" {
				return x.reset(fmt.Sprintf("is at seq %d, but the log in %s ends before it", cur.Seq, x.cfg.Dir))
			}
			if err := flush(); err != nil {
				return err
			}
			x.moving()
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(x.cfg.Poll):
			}
			continue
		}
		if resume {
			resume = false
			rot, isRot := e.Body.(audit.Rotation)
			switch {
			case e.Record.Seq == cur.Seq && bytes.Equal(e.Hash[:], cur.Hash):
				continue // the cursor's own record, sent before
			case isRot && e.Record.Seq == cur.Seq+1 && bytes.Equal(rot.PrevHead, cur.Hash):
				// The retention removed the file of the cursor's record
				// (it was sent): the oldest file left starts right after
				// it, and chains to it.
			case isRot && e.Record.Seq > cur.Seq+1:
				// The oldest file left starts after records that were
				// never sent: the retention removed them first (a gap,
				// said below).
			default:
				return x.reset(fmt.Sprintf("is at seq %d with hash %x, but the log in %s has %s there (%s offset %d seq %d): the log was replaced, rolled back or rewritten",
					cur.Seq, cur.Hash, x.cfg.Dir, e.Hash, e.File, e.Offset, e.Record.Seq))
			}
		}
		if wait := x.cfg.MinAge - time.Since(e.Record.Time.Time()); wait > 0 {
			if err := flush(); err != nil {
				return err
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(wait):
			}
		}
		if hasNext && e.Record.Seq > next {
			gap := FormatGap(f.LogID(), next, e.Record.Seq-1, x.cfg.Hostname, x.cfg.AppName, time.Now())
			buf.Write(Frame(gap))
			x.cfg.OnError(fmt.Errorf("records %d to %d of the audit log in %s were removed by its retention before they were exported to %s (the receiver is told)",
				next, e.Record.Seq-1, x.cfg.Dir, x.cfg.Addr))
		}
		next, hasNext = e.Record.Seq+1, true
		buf.Write(Frame(FormatWith(e, f.LogID(), x.cfg.Hostname, x.cfg.AppName, x.known, x.cfg.Formatters)))
		if ev, ok := e.Body.(audit.Event); ok && ev.Type == audit.EventLogRecovered {
			// The sessions open when the gate stopped: their ends will
			// never come. Before remember forgets them.
			for _, id := range slices.Sorted(maps.Keys(x.known)) {
				buf.Write(Frame(FormatCut(f.LogID(), e.Record.Seq, id, x.known[id], x.cfg.Hostname, x.cfg.AppName, time.Now())))
			}
		}
		x.remember(e)
		pending++
		last = e
		if pending >= x.cfg.Batch {
			if err := flush(); err != nil {
				return err
			}
		}
	}
}

// remember updates known with what e says about sessions.
func (x *Exporter) remember(e audit.Entry) {
	switch b := e.Body.(type) {
	case audit.SessionStart:
		if len(x.known) < maxKnownSessions {
			x.known[b.SessionID] = Labels{User: b.User, Asset: b.Asset}
		} else {
			x.cfg.OnError(fmt.Errorf("session %s (seq %d): more than %d sessions open without an end record; its later records go out without user and asset", b.SessionID, e.Record.Seq, maxKnownSessions))
		}
	case audit.SessionEnd:
		delete(x.known, b.SessionID)
	case audit.Event:
		// A sealed end or the recovery from an unclean one: the
		// sessions of the run before can have no more records (the
		// proxy does not carry sessions over a restart). Without this a
		// crash would leave its open sessions in every cursor for good.
		if b.Type == audit.EventLogClosed || b.Type == audit.EventLogRecovered {
			clear(x.known)
		}
	}
}

func (x *Exporter) dial(ctx context.Context) (net.Conn, error) {
	d := net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	if x.cfg.TLS == nil {
		c, err := d.DialContext(ctx, "tcp", x.cfg.Addr)
		if err != nil {
			return nil, fmt.Errorf("connect to syslog receiver %s: %w", x.cfg.Addr, err)
		}
		return c, nil
	}
	td := tls.Dialer{NetDialer: &d, Config: x.cfg.TLS}
	c, err := td.DialContext(ctx, "tcp", x.cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("connect to syslog receiver %s over TLS: %w", x.cfg.Addr, err)
	}
	return c, nil
}

// drain waits until the receiver's TCP acknowledged every byte sent.
func (x *Exporter) drain(ctx context.Context, conn net.Conn) error {
	raw := conn
	if tc, ok := conn.(*tls.Conn); ok {
		raw = tc.NetConn()
	}
	tcp, isTCP := raw.(*net.TCPConn)
	if !isTCP {
		return stuck(fmt.Errorf("cannot check the send queue of a %T", raw))
	}
	rc, err := tcp.SyscallConn()
	if err != nil {
		return fmt.Errorf("send queue of %s: %w", x.cfg.Addr, err)
	}
	deadline := time.Now().Add(x.cfg.DrainWait)
	for wait := time.Millisecond; ; {
		var queued int
		var ierr error
		if err := rc.Control(func(fd uintptr) { queued, ierr = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ) }); err != nil {
			return fmt.Errorf("send queue of %s: %w", x.cfg.Addr, err)
		}
		if ierr != nil {
			return fmt.Errorf("send queue of %s: %w", x.cfg.Addr, ierr)
		}
		if queued == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("syslog receiver %s did not acknowledge %d bytes within %s", x.cfg.Addr, queued, x.cfg.DrainWait)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		if wait < 50*time.Millisecond {
			wait *= 2
		}
	}
}
