package syslog

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
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

	Poll       time.Duration // how often to look for new records (default 200 ms)
	Batch      int           // records written before the cursor moves (default 256)
	DrainWait  time.Duration // how long the receiver may take to acknowledge a batch (default 30 s)
	RetryDelay time.Duration // first reconnect delay, doubled up to 30 s (default 500 ms)
	// MinAge holds a record back until it is this old (default 2 s), so
	// that what is exported has been fsynced by the writer's periodic
	// flush (audit.WithFlushInterval, default 1 s): a record lost in a
	// power cut is then never in the SIEM. Negative: no delay.
	MinAge  time.Duration
	OnError func(error) // connection errors (the exporter retries), and the permanent error that stops it
}

// Exporter sends the audit log to a syslog receiver.
type Exporter struct {
	cfg Config
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
	if cfg.OnError == nil {
		cfg.OnError = func(error) {}
	}
	return &Exporter{cfg: cfg, known: map[string]Labels{}}, nil
}

// Run exports until ctx ends, reconnecting after errors. It returns
// ctx's error, or a permanent error (a damaged log, a cursor of another
// log) that retrying cannot fix; a permanent error also goes to OnError,
// so a Run started in a goroutine does not stop unnoticed.
func (x *Exporter) Run(ctx context.Context) error {
	delay := x.cfg.RetryDelay
	for {
		err := x.session(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var p *audit.Problem
		if errors.As(err, &p) || errors.Is(err, errPermanent) {
			// Said through OnError too: a caller running Run in a
			// goroutine would otherwise never learn that the export
			// stopped for good.
			x.cfg.OnError(fmt.Errorf("export STOPPED, nothing more goes to %s until this is fixed and the exporter restarted: %w", x.cfg.Addr, err))
			return err
		}
		x.cfg.OnError(err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
		if delay *= 2; delay > 30*time.Second {
			delay = 30 * time.Second
		}
		if err == nil {
			delay = x.cfg.RetryDelay
		}
	}
}

var errPermanent = errors.New("permanent export error")

// session runs one connection: resend from the cursor, then follow.
func (x *Exporter) session(ctx context.Context) error {
	cur, hasCur, err := LoadCursor(x.cfg.Cursor)
	if err != nil {
		return fmt.Errorf("%w: %w", errPermanent, err)
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
	f := audit.NewFollower(x.cfg.Dir, cur.Seq, hasCur)
	if hasCur {
		f.ExpectHash(cur.Hash)
	}
	var buf bytes.Buffer
	pending := 0
	var last audit.Entry
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
			return fmt.Errorf("%w: %w", errPermanent, err)
		}
		buf.Reset()
		pending = 0
		return nil
	}
	for {
		e, ok, err := f.TryNext()
		if err != nil {
			return err
		}
		if !ok {
			if err := flush(); err != nil {
				return err
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(x.cfg.Poll):
			}
			continue
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
		if hasCur && f.LogID() != cur.LogID {
			return fmt.Errorf("%w: cursor %s is for log %q, the log in %s is %q", errPermanent, x.cfg.Cursor, cur.LogID, x.cfg.Dir, f.LogID())
		}
		buf.Write(Frame(Format(e, f.LogID(), x.cfg.Hostname, x.cfg.AppName, x.known)))
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
		return fmt.Errorf("%w: cannot check the send queue of a %T", errPermanent, raw)
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
