package proxy

import (
	"crypto/tls"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/otgate/otgate/audit"
	"github.com/otgate/otgate/services/proxy/wire"
)

// The session notice stream (wire.ALPNNotices): beside its tunnels a
// client keeps one mutual-TLS stream on which the gate pushes, for the
// user's live sessions, each deadline as it is set or moved, a warning
// the configured lead before it (timed here, re-armed when the deadline
// moves) and the end with the reason the audit log records.
//
// Nothing on a session's path ever waits for a notice stream: a notice is
// queued without blocking (a full queue drops it and counts it, and the
// next frame the client reads carries the count), and one goroutine per
// stream writes the queue out.

// EventNoticesRefused is the audit event type of a refused notice stream.
const EventNoticesRefused = "notices-refused"

// noticeWriteTimeout closes a stream whose client has not taken a frame
// for this long (its queue dropped notices meanwhile).
var noticeWriteTimeout = 30 * time.Second

// noticeCloseGrace bounds writing the final frames of a stream the gate
// closes.
const noticeCloseGrace = 2 * time.Second

func (c *Config) noticeDefaults() {
	if c.NoticeWarnBefore <= 0 {
		c.NoticeWarnBefore = time.Minute
	}
	if c.MaxNoticeStreamsPerUser <= 0 {
		c.MaxNoticeStreamsPerUser = 16
	}
	if c.NoticeQueue <= 0 {
		c.NoticeQueue = 64
	}
}

// noticeHub holds the open notice streams by user.
type noticeHub struct {
	lead    time.Duration
	max     int
	queue   int
	now     func() time.Time
	logf    func(string, ...any)
	dropped atomic.Uint64 // over all streams, for tests and logs

	mu    sync.Mutex
	users map[string][]*noticeStream // oldest first
	// closed is closeAll's reason once it ran: a stream added later is
	// closed at once with it.
	closed string
}

func newNoticeHub(cfg *Config) *noticeHub {
	// A stream opens with its hello and, for each of the user's live
	// sessions, a deadline and perhaps a warning: the queue holds them all,
	// or catching up would drop notices before the client read one.
	queue := max(cfg.NoticeQueue, 2*cfg.MaxSessionsPerUser+1)
	return &noticeHub{lead: cfg.NoticeWarnBefore, max: cfg.MaxNoticeStreamsPerUser, queue: queue,
		now: cfg.Now, logf: cfg.Logf, users: map[string][]*noticeStream{}}
}

// noticeStream is one client's open stream.
type noticeStream struct {
	hub     *noticeHub
	user    string
	source  string
	chain   [][]byte
	conn    *tls.Conn
	q       chan wire.Notice
	dropped atomic.Uint64

	closeOnce sync.Once
	done      chan struct{} // closed by close; final is set before
	final     wire.Notice
	expiry    *time.Timer
}

// send queues n without ever blocking; a full queue drops it.
func (st *noticeStream) send(n wire.Notice) {
	select {
	case <-st.done:
		return
	default:
	}
	select {
	case st.q <- n:
	default:
		st.dropped.Add(1)
		st.hub.dropped.Add(1)
	}
}

// close ends the stream: the writer flushes what is queued and, when
// reason is not empty, a final NoticeClosed, within noticeCloseGrace.
func (st *noticeStream) close(reason string) {
	st.closeOnce.Do(func() {
		if reason != "" {
			st.final = wire.Notice{Kind: wire.NoticeClosed, Reason: reason}
			st.hub.logf("proxy: notice stream of %s from %s closed: %s", st.user, st.source, reason)
		}
		// A writer stuck on a client that does not read gives up soon.
		st.conn.SetWriteDeadline(time.Now().Add(noticeCloseGrace))
		close(st.done)
	})
}

// write writes one frame with the drop count so far.
func (st *noticeStream) write(n wire.Notice, timeout time.Duration) error {
	n.Dropped = st.dropped.Load()
	select {
	case <-st.done:
		// close set a short deadline; keep it.
	default:
		st.conn.SetWriteDeadline(time.Now().Add(timeout))
	}
	err := wire.WriteFrame(st.conn, n)
	if err != nil {
		// No close_notify after a failed write: it would go out with the
		// lost record's successor's sequence number ("bad record MAC").
		st.conn.NetConn().Close()
	}
	return err
}

// writer writes the queue out until the stream closes or a write fails.
func (st *noticeStream) writer() {
	defer st.conn.Close()
	for {
		select {
		case n := <-st.q:
			if err := st.write(n, noticeWriteTimeout); err != nil {
				st.close("")
				st.hub.logf("proxy: notice stream of %s from %s: %v (%d notices dropped): closing", st.user, st.source, err, st.dropped.Load())
				return
			}
		case <-st.done:
		drain:
			for {
				select {
				case n := <-st.q:
					if st.write(n, noticeCloseGrace) != nil {
						return
					}
				default:
					break drain
				}
			}
			if st.final.Kind != "" {
				st.write(st.final, noticeCloseGrace)
			}
			return
		}
	}
}

// add registers st; beyond the user's limit the oldest stream is closed.
// After closeAll, st is closed at once with closeAll's reason.
func (h *noticeHub) add(st *noticeStream) {
	h.mu.Lock()
	if h.closed != "" {
		h.mu.Unlock()
		st.close(h.closed)
		return
	}
	list := h.users[st.user]
	var evicted []*noticeStream
	for len(list) >= h.max {
		evicted = append(evicted, list[0])
		list = list[1:]
	}
	h.users[st.user] = append(list[:len(list):len(list)], st)
	h.mu.Unlock()
	for _, old := range evicted {
		old.close(fmt.Sprintf("user %q opened more than %d notice streams: this one, the oldest, was replaced by a newer one", st.user, h.max))
	}
}

func (h *noticeHub) remove(st *noticeStream) {
	h.mu.Lock()
	defer h.mu.Unlock()
	list := h.users[st.user]
	for i, x := range list {
		if x == st {
			list = append(list[:i:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(h.users, st.user)
	} else {
		h.users[st.user] = list
	}
}

func (h *noticeHub) streams(user string) []*noticeStream {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]*noticeStream(nil), h.users[user]...)
}

func (h *noticeHub) count(user string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.users[user])
}

// publish queues n on each of user's streams; it never blocks.
func (h *noticeHub) publish(user string, n wire.Notice) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, st := range h.users[user] {
		st.send(n)
	}
}

// closeAll closes every stream, and every stream added from now on, with
// reason (shutdown; EndShutdown when empty).
func (h *noticeHub) closeAll(reason string) {
	if reason == "" {
		reason = EndShutdown
	}
	h.mu.Lock()
	h.closed = reason
	var all []*noticeStream
	for _, l := range h.users {
		all = append(all, l...)
	}
	h.mu.Unlock()
	for _, st := range all {
		st.close(reason)
	}
}

// recheck re-verifies the credential of each of user's streams and
// closes those that no longer pass (as RecheckUser ends sessions).
func (h *noticeHub) recheck(user string, verify func([][]byte) error) {
	for _, st := range h.streams(user) {
		if err := verify(st.chain); err != nil {
			st.close(EndRevoked + ": " + err.Error())
		}
	}
}

// noticeStream serves one notice stream: the same certificate checks as
// a tunnel, then frames until the client or the gate closes it.
func (s *Server) noticeStream(tc *tls.Conn) {
	src := sourceOf(tc).String()
	// A revocation check that runs between the certificate check and the
	// stream's registration sweeps without it: it bumps the epoch first,
	// and a moved epoch checks the certificate again once registered.
	epoch := s.admitEpoch.Load()
	cred, chain, user, refusal := s.verifyClient(tc.ConnectionState())
	if cred == nil {
		s.event(audit.Event{Type: EventNoticesRefused, User: user, Source: src, Reason: refusal})
		s.cfg.Logf("proxy: refused notice stream of %q from %s: %s", user, src, refusal)
		answer(tc, wire.Notice{Kind: wire.NoticeClosed, Reason: refusal}, s.cfg.HandshakeTimeout)
		tc.Close()
		return
	}
	tc.SetDeadline(time.Time{})
	h := s.notices
	st := &noticeStream{hub: h, user: cred.User, source: src, chain: chain, conn: tc,
		q: make(chan wire.Notice, h.queue), done: make(chan struct{})}
	hello := wire.Notice{Kind: wire.NoticeHello, User: cred.User, WarnBefore: h.lead.Milliseconds()}
	if !cred.NotAfter.IsZero() {
		hello.Until = cred.NotAfter.Unix()
		st.expiry = time.AfterFunc(cred.NotAfter.Sub(s.cfg.Now()), func() {
			st.close(fmt.Sprintf("credential expired at %s (log in again: otgate login)", cred.NotAfter.UTC().Format(time.RFC3339)))
		})
	}
	st.q <- hello
	h.add(st) // closes st at once when the server is shutting down
	defer h.remove(st)
	if s.admitEpoch.Load() != epoch {
		if _, err := s.cfg.CA.Verify(chain); err != nil {
			st.close(EndRevoked + ": " + err.Error())
		}
	}
	if st.expiry != nil {
		defer st.expiry.Stop()
	}
	s.cfg.Logf("proxy: notice stream of %s from %s open", cred.User, src)
	// What the user's live sessions stand at now.
	for _, sess := range s.reg.snapshot() {
		if sess.user == cred.User {
			sess.noticeCatchUp(st)
		}
	}
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		st.writer()
	}()
	// The client sends nothing: a read returns when it closes the stream
	// (or breaks the protocol), or when the writer closed the connection
	// (the stream was closed: shutdown, revocation, expiry, eviction).
	var b [1]byte
	tc.Read(b[:])
	st.close("")
	<-wrote
}

// sessionNotices is a session's part in the notice streams; guarded by
// the session's mu.
//
// Nothing is sent about a session before the client was told it is
// accepted (accepted, set by session.accept), nor after its end was
// announced or the session finished (finished), nor a deadline or a
// warning once it has ended: an admission that is discarded (decided
// again after a reload, refused after the decision, the log or the
// asset failing, the client gone) never appears on a stream.
type sessionNotices struct {
	hub      *noticeHub
	warn     *time.Timer
	accepted bool
	gen      uint64 // deadlines announced; 0: none yet
	warned   uint64 // the gen whose deadline was warned of
	finished bool
}

// isEnded reports whether s has been ended (its end may not be announced
// yet).
func (s *session) isEnded() bool {
	select {
	case <-s.ended:
		return true
	default:
		return false
	}
}

// notice is a notice about s (s.mu held or fields immutable).
func (s *session) notice(kind string, until time.Time) wire.Notice {
	n := wire.Notice{Kind: kind, Session: s.id, Asset: s.asset, Protocol: s.protocol, Rule: s.rule}
	if !until.IsZero() {
		n.Until = until.Unix()
	}
	return n
}

// noticeDeadline announces until as the session's deadline and arms the
// warning, once the session is accepted and while it has not ended;
// setUntil and accept call it with s.mu held.
func (s *session) noticeDeadline(until, now time.Time) {
	sn := &s.note
	if sn.hub == nil {
		return
	}
	if sn.warn != nil {
		sn.warn.Stop()
		sn.warn = nil
	}
	if !sn.accepted || sn.finished || s.done || s.isEnded() {
		return
	}
	sn.gen++
	sn.hub.publish(s.user, s.notice(wire.NoticeDeadline, until))
	if until.IsZero() {
		return
	}
	gen := sn.gen
	d := until.Sub(now) - sn.hub.lead
	if d <= 0 {
		s.noticeWarning(until, now)
		return
	}
	sn.warn = time.AfterFunc(d, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if sn.gen == gen && !sn.finished {
			s.noticeWarning(until, sn.hub.now())
		}
	})
}

// noticeWarning publishes the warning (s.mu held).
func (s *session) noticeWarning(until, now time.Time) {
	if s.isEnded() {
		return
	}
	left := until.Sub(now)
	if left <= 0 {
		return
	}
	n := s.notice(wire.NoticeWarning, until)
	n.Left = max(left.Milliseconds(), 1)
	s.note.hub.publish(s.user, n)
	s.note.warned = s.note.gen
}

// noticeWarnIfDue publishes the warning when the deadline is within the
// lead by the wall clock and it has not gone out: the warning's timer
// runs on the monotonic clock, which stands still while the machine or VM
// is suspended and knows nothing of a clock set forward (the sweep asks
// every second, as it does for the deadline itself).
func (s *session) noticeWarnIfDue(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sn := &s.note
	if sn.hub == nil || !sn.accepted || sn.finished || sn.gen == 0 || sn.warned == sn.gen || s.until.IsZero() {
		return
	}
	if now.Round(0).Before(s.until.Round(0).Add(-sn.hub.lead)) {
		return
	}
	if sn.warn != nil {
		sn.warn.Stop()
		sn.warn = nil
	}
	s.noticeWarning(s.until, now)
}

// noticeCatchUp tells a newly opened stream where the session stands.
func (s *session) noticeCatchUp(st *noticeStream) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.note.accepted || s.note.gen == 0 || s.note.finished || s.isEnded() {
		return
	}
	st.send(s.notice(wire.NoticeDeadline, s.until))
	if s.until.IsZero() {
		return
	}
	if left := s.until.Sub(s.note.hub.now()); left > 0 && left <= s.note.hub.lead {
		n := s.notice(wire.NoticeWarning, s.until)
		n.Left = max(left.Milliseconds(), 1)
		st.send(n)
	}
}

// noticeRules announces that the session's Modbus requests are judged
// otherwise from now on; change says how, for the user (judging; s.mu
// held).
func (s *session) noticeRules(change string) {
	sn := &s.note
	if sn.hub == nil || !sn.accepted || sn.finished || s.done || s.isEnded() {
		return
	}
	n := s.notice(wire.NoticeRules, s.until)
	n.Reason = change
	sn.hub.publish(s.user, n)
}

// noticeEnded announces the end with the reason the audit log records;
// nothing more is announced about s after it. A session not accepted
// (yet) is not announced: the client has only its refusal. (Its tunnel
// calls noticeEnded again when it returns: a session accepted meanwhile
// gets its end announced then.)
func (s *session) noticeEnded(reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sn := &s.note
	if sn.hub == nil || sn.finished {
		return
	}
	if sn.warn != nil {
		sn.warn.Stop()
		sn.warn = nil
	}
	if !sn.accepted {
		return
	}
	sn.finished = true
	n := s.notice(wire.NoticeEnded, time.Time{})
	n.Reason, n.ByGate = reason, s.endReason != ""
	sn.hub.publish(s.user, n)
}
