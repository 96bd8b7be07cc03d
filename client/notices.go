package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/otgate/otgate/services/proxy/wire"
)

// ErrNoticesUnsupported: the gate does not offer the notice stream
// (wire.ALPNNotices; a gate older than it).
var ErrNoticesUnsupported = errors.New("the gate offers no session notices")

// NoticesClosedError is the gate closing (or refusing) a notice stream,
// with its reason: credential revoked or expired, stream limit, shutdown.
type NoticesClosedError struct{ Reason string }

func (e *NoticesClosedError) Error() string { return "gate closed the notice stream: " + e.Reason }

// NoticeStream is an open notice stream.
type NoticeStream struct {
	// Hello is the gate's first frame (user, credential end, warning lead).
	Hello wire.Notice
	c     *tls.Conn
}

// Notices opens the notice stream with the client certificate. The gate
// pushes deadline, warning and ended notices for all of the user's
// sessions (see package wire).
func (s *Session) Notices(ctx context.Context) (*NoticeStream, error) {
	c, err := s.dial(ctx, wire.ALPNNotices)
	if err != nil {
		// A Go gate without the ALPN fails the handshake with
		// no_application_protocol; another one would pick none.
		if m := err.Error(); strings.Contains(m, "no application protocol") || strings.Contains(m, "does not speak") {
			return nil, fmt.Errorf("%w: %v", ErrNoticesUnsupported, err)
		}
		return nil, err
	}
	stop := closeWhenDone(ctx, c)
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	ns := &NoticeStream{c: c}
	err = wire.ReadFromGate(c, &ns.Hello)
	if !stop() && err == nil {
		err = ctx.Err()
	}
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("read the gate's notice hello: %w", ctxErr(ctx, err))
	}
	if ns.Hello.Kind == wire.NoticeClosed {
		c.Close()
		return nil, &NoticesClosedError{Reason: ns.Hello.Reason}
	}
	if ns.Hello.Kind != wire.NoticeHello {
		c.Close()
		return nil, fmt.Errorf("gate opened the notice stream with %q, want %q", ns.Hello.Kind, wire.NoticeHello)
	}
	c.SetReadDeadline(time.Time{})
	return ns, nil
}

// Next returns the next notice. The gate's final NoticeClosed is
// returned as a *NoticesClosedError.
func (ns *NoticeStream) Next() (wire.Notice, error) {
	var n wire.Notice
	if err := wire.ReadFromGate(ns.c, &n); err != nil {
		return n, err
	}
	if n.Kind == wire.NoticeClosed {
		return n, &NoticesClosedError{Reason: n.Reason}
	}
	return n, nil
}

// Close closes the stream.
func (ns *NoticeStream) Close() error { return ns.c.Close() }

// endedWait is how long a closed tunnel waits for the gate's ended notice
// before OnEnd (the notice travels on its own connection).
const endedWait = 2 * time.Second

// noticeRetry is the first wait before reopening a lost notice stream.
const noticeRetry = 2 * time.Second

// noticeStable is how long a notice stream must have held for its loss
// to be reopened at once, and the wait before reopening to start over.
const noticeStable = time.Minute

// endedGrace is how long a tunnel the gate said has ended may still
// deliver what it carries before the client closes it: the ended notice
// travels on its own connection and can overtake the tunnel's last bytes
// and its close. Normally the gate's close arrives first and ends the
// tunnel; the grace only runs out when that close never comes through (a
// middlebox that dropped the tunnel's state, a half-open connection),
// which would otherwise leave the local tool waiting on a session that
// is over until TCP keepalive gives up, minutes later.
const endedGrace = time.Second

// pendingMax bounds the notices kept for sessions the forwarder does not
// know yet (the notice can overtake the tunnel's reply).
const pendingMax = 64

// noticeWatch follows the notice stream of one Forwarder and keeps its
// sessions' warnings: the gate's when the stream is up, local timers
// from the last deadline known when it is not.
type noticeWatch struct {
	f *Forwarder
	// newCredential is signalled when Follow took a new login's
	// credential: a stream the gate closed for the old one (expired,
	// revoked) is opened again with it.
	newCredential chan struct{}

	mu       sync.Mutex
	up       bool
	sessions map[string]*tracked
	pending  []pendingNotice
}

type pendingNotice struct {
	n  wire.Notice
	at time.Time
}

type tracked struct {
	reply wire.Reply // Until and Rule as last told
	local *time.Timer
	ended chan struct{} // closed at the gate's ended notice
	// closeConns closes the session's local and gate connections; the
	// ended notice runs it endedGrace later (closeAfter), unless the
	// tunnel ended by then.
	closeConns func()
	closeAfter *time.Timer
}

func (f *Forwarder) warnBefore() time.Duration {
	if f.WarnBefore > 0 {
		return f.WarnBefore
	}
	return WarnBefore
}

func newNoticeWatch(f *Forwarder) *noticeWatch {
	return &noticeWatch{f: f, sessions: map[string]*tracked{}, newCredential: make(chan struct{}, 1)}
}

// track starts following an accepted tunnel; closeConns closes its local
// and gate connections (the gate's ended notice runs it).
func (w *noticeWatch) track(reply *wire.Reply, closeConns func()) *tracked {
	tr := &tracked{reply: *reply, ended: make(chan struct{}), closeConns: closeConns}
	w.mu.Lock()
	w.sessions[reply.Session] = tr
	var replay []wire.Notice
	keep := w.pending[:0]
	for _, p := range w.pending {
		if p.n.Session == reply.Session {
			replay = append(replay, p.n)
		} else if time.Since(p.at) < time.Minute {
			keep = append(keep, p)
		}
	}
	w.pending = keep
	if !w.up {
		w.armLocal(tr)
	}
	w.mu.Unlock()
	for _, n := range replay {
		w.deliver(n)
	}
	return tr
}

// done stops following a closed tunnel, after waiting a little for the
// gate's ended notice when the stream is up.
func (w *noticeWatch) done(tr *tracked) {
	w.mu.Lock()
	up := w.up
	w.mu.Unlock()
	if up {
		select {
		case <-tr.ended:
		case <-time.After(endedWait):
		}
	}
	w.mu.Lock()
	delete(w.sessions, tr.reply.Session)
	if tr.local != nil {
		tr.local.Stop()
	}
	if tr.closeAfter != nil {
		tr.closeAfter.Stop()
	}
	w.mu.Unlock()
}

// armLocal (re)arms the local warning timer from the last deadline known
// (w.mu held).
func (w *noticeWatch) armLocal(tr *tracked) {
	if tr.local != nil {
		tr.local.Stop()
		tr.local = nil
	}
	until := tr.reply.UntilTime()
	if until.IsZero() || w.f.OnWarn == nil {
		return
	}
	r := tr.reply
	tr.local = time.AfterFunc(max(time.Until(until)-w.f.warnBefore(), 0), func() {
		if left := time.Until(until); left > 0 {
			w.f.OnWarn(&r, left)
		}
	})
}

// setUp records whether the stream is up: up, the gate's warnings replace
// the local timers; down, local timers take over again.
func (w *noticeWatch) setUp(up bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.up = up
	for _, tr := range w.sessions {
		if up {
			if tr.local != nil {
				tr.local.Stop()
				tr.local = nil
			}
		} else {
			w.armLocal(tr)
		}
	}
}

// deliver handles one notice from the gate.
func (w *noticeWatch) deliver(n wire.Notice) {
	w.mu.Lock()
	tr, ok := w.sessions[n.Session]
	if !ok {
		if n.Session != "" {
			if len(w.pending) >= pendingMax {
				w.pending = w.pending[1:]
			}
			w.pending = append(w.pending, pendingNotice{n, time.Now()})
		}
		w.mu.Unlock()
		return
	}
	before := tr.reply
	switch n.Kind {
	case wire.NoticeDeadline, wire.NoticeWarning:
		tr.reply.Until = n.Until
		if n.Rule != "" {
			tr.reply.Rule = n.Rule
		}
		if !w.up {
			w.armLocal(tr)
		}
	case wire.NoticeEnded:
		select {
		case <-tr.ended:
		default:
			close(tr.ended)
			// The gate relays nothing more for this session: the
			// local tool must see its connection close, not wait.
			if tr.closeConns != nil {
				tr.closeAfter = time.AfterFunc(endedGrace, tr.closeConns)
			}
		}
	}
	after := tr.reply
	w.mu.Unlock()
	if w.f.OnNotice != nil {
		w.f.OnNotice(&before, n)
	}
	if n.Kind == wire.NoticeWarning && w.f.OnWarn != nil {
		w.f.OnWarn(&after, n.LeftDuration())
	}
}

// credentialChanged tells run of a new credential.
func (w *noticeWatch) credentialChanged() {
	select {
	case w.newCredential <- struct{}{}:
	default:
	}
}

// closedWait waits, after the gate closed the stream, for a new login's
// credential (FollowLogin) to open it again with; false: there will be
// none, or ctx ended.
func (w *noticeWatch) closedWait(ctx context.Context) bool {
	if !w.f.FollowLogin {
		return false
	}
	select {
	case <-ctx.Done():
		return false
	case <-w.newCredential:
		return true
	}
}

// run keeps the notice stream open until ctx ends, the gate does not
// offer it, or the gate closes it (credential revoked or expired, stream
// limit): then local timers warn, until a new login's credential
// (FollowLogin) opens it again. OnNoticeStream hears of each change.
func (w *noticeWatch) run(ctx context.Context) {
	report := func(err error) {
		if w.f.OnNoticeStream != nil {
			w.f.OnNoticeStream(err)
		}
	}
	wait := noticeRetry
	wasDown := false
	for ctx.Err() == nil {
		ns, err := w.f.Session.Notices(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			var closed *NoticesClosedError
			if errors.Is(err, ErrNoticesUnsupported) {
				report(err)
				return
			}
			if errors.As(err, &closed) {
				report(err)
				if !w.closedWait(ctx) {
					return
				}
				wait, wasDown = noticeRetry, false
				continue
			}
			if !wasDown {
				report(fmt.Errorf("notice stream: %w (retrying; warnings from local timers meanwhile)", err))
				wasDown = true
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			wait = min(2*wait, time.Minute)
			continue
		}
		wasDown = false
		opened := time.Now()
		w.setUp(true)
		report(nil)
		stop := context.AfterFunc(ctx, func() { ns.Close() })
		for {
			var n wire.Notice
			n, err = ns.Next()
			if err != nil {
				break
			}
			w.deliver(n)
		}
		stop()
		ns.Close()
		w.setUp(false)
		if ctx.Err() != nil {
			return
		}
		var closed *NoticesClosedError
		if errors.As(err, &closed) {
			report(err)
			if !w.closedWait(ctx) {
				return
			}
			wait, wasDown = noticeRetry, false
			continue
		}
		report(fmt.Errorf("notice stream lost: %w (reopening; warnings from local timers meanwhile)", err))
		wasDown = true
		// A stream that held was lost by chance (a gate restart, a
		// middlebox): reopen it at once. One lost soon after it opened
		// would, reopened at once, make a loop of handshakes with the
		// gate: wait as after a failed open, longer each time.
		if time.Since(opened) >= noticeStable {
			wait = noticeRetry
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Minute)
	}
}
