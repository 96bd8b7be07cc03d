package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/otgate/otgate/client"
	"github.com/otgate/otgate/services/proxy/wire"
)

// noticeLead is the gate's warning lead in these tests.
const noticeLead = time.Second

func noticeGate(t *testing.T, l *lab, opts ...func(*Config)) *gate {
	return newGate(t, l, append([]func(*Config){func(c *Config) { c.NoticeWarnBefore = noticeLead }}, opts...)...)
}

// nextNotice reads the next notice within d.
func nextNotice(t *testing.T, c <-chan wire.Notice, d time.Duration, what string) wire.Notice {
	t.Helper()
	select {
	case n := <-c:
		return n
	case <-time.After(d):
		t.Fatalf("no notice within %v: want %s", d, what)
	}
	return wire.Notice{}
}

// openNotices opens a raw notice stream (client API).
func openNotices(t *testing.T, s *client.Session) *client.NoticeStream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ns, err := s.Notices(ctx)
	if err != nil {
		t.Fatalf("open notice stream: %v", err)
	}
	t.Cleanup(func() { ns.Close() })
	return ns
}

// streamNotices reads ns into a channel until it ends; the end error
// goes to the second channel.
func streamNotices(ns *client.NoticeStream) (<-chan wire.Notice, <-chan error) {
	c, e := make(chan wire.Notice, 256), make(chan error, 1)
	go func() {
		for {
			n, err := ns.Next()
			if err != nil {
				e <- err
				return
			}
			c <- n
		}
	}()
	return c, e
}

// TestNoticesDeadlineWarningEnded: through otgate connect's Forwarder, a
// reload that moves a live session's deadline to a few seconds from now
// makes the gate push the new deadline, then its own warning (at the
// gate's lead), then the end with the audit log's reason; a reload that
// no longer allows a session pushes its end with that reason.
func TestNoticesDeadlineWarningEnded(t *testing.T) {
	l := newLab(t)
	go serveEcho(l.listenPlant(t, 7))
	g := noticeGate(t, l)
	g.setGrants(
		grant{rule: "alice-echo", user: "alice", asset: "echo-1", protocol: "tcp"},
		grant{rule: "alice-echo2", user: "alice", asset: "echo-2", protocol: "tcp"},
	)
	alice := g.mustLogin("alice")

	notices := make(chan wire.Notice, 64)
	warns := make(chan time.Duration, 8)
	ends := make(chan string, 8)
	streams := make(chan error, 8)
	replies := make(chan *wire.Reply, 8)
	f := &client.Forwarder{Session: alice, Asset: "echo-1", Protocol: "tcp",
		OnTunnel: func(_ net.Addr, r *wire.Reply, err error) {
			if err != nil {
				t.Errorf("tunnel: %v", err)
			}
			replies <- r
		},
		OnNotice:       func(_ *wire.Reply, n wire.Notice) { notices <- n },
		OnWarn:         func(_ *wire.Reply, left time.Duration) { warns <- left },
		OnEnd:          func(r *wire.Reply) { ends <- r.Session },
		OnNoticeStream: func(err error) { streams <- err },
		// Local timers at the gate's lead: a second warning would be
		// one running beside the gate's notices.
		WarnBefore: noticeLead,
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Serve(ctx, ln) }()
	defer func() { cancel(); <-done }()
	select {
	case err := <-streams:
		if err != nil {
			t.Fatalf("notice stream: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("notice stream not up within 30 s")
	}

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	echoRoundTrip(t, c, "hello")
	r := <-replies
	n := nextNotice(t, notices, 10*time.Second, "the connect-time deadline")
	if n.Kind != wire.NoticeDeadline || n.Session != r.Session || n.Until != r.Until || n.Rule != "alice-echo" || n.Asset != "echo-1" {
		t.Fatalf("first notice %+v, want the deadline of session %s as in its reply (until %d)", n, r.Session, r.Until)
	}

	// The reload moves the deadline to 4 s from now.
	until := time.Now().Add(4 * time.Second)
	g.setGrants(
		grant{rule: "alice-echo", user: "alice", asset: "echo-1", protocol: "tcp", until: until},
		grant{rule: "alice-echo2", user: "alice", asset: "echo-2", protocol: "tcp"},
	)
	n = nextNotice(t, notices, 5*time.Second, "the moved deadline")
	if n.Kind != wire.NoticeDeadline || n.Session != r.Session || n.Until != until.Unix() {
		t.Fatalf("notice after the reload %+v, want deadline %d of session %s", n, until.Unix(), r.Session)
	}
	n = nextNotice(t, notices, 5*time.Second, "the gate's warning")
	at := time.Now()
	if n.Kind != wire.NoticeWarning || n.Session != r.Session || n.Until != until.Unix() {
		t.Fatalf("notice %+v, want the warning of session %s", n, r.Session)
	}
	if left := n.LeftDuration(); left <= 0 || left > noticeLead+100*time.Millisecond || !at.Before(until) {
		t.Fatalf("warning with %v left, received %v before the deadline: want at most the lead %v, before the end", left, until.Sub(at), noticeLead)
	}
	if left := <-warns; left <= 0 || left > noticeLead+100*time.Millisecond {
		t.Fatalf("OnWarn told %v left", left)
	}
	n = nextNotice(t, notices, 5*time.Second, "the end")
	if n.Kind != wire.NoticeEnded || n.Session != r.Session || !strings.HasPrefix(n.Reason, EndUntil+": rule ") || !n.ByGate {
		t.Fatalf("notice %+v, want session %s ended by the gate: %s", n, r.Session, EndUntil)
	}
	if end := g.waitEnd(r.Session, EndUntil); end.Reason != n.Reason {
		t.Fatalf("audit end reason %q, notice %q", end.Reason, n.Reason)
	}
	c.Close() // the forwarder's splice waits for the local side
	select {
	case s := <-ends:
		if s != r.Session {
			t.Fatalf("OnEnd of %s, want %s", s, r.Session)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("OnEnd not called")
	}
	select {
	case left := <-warns:
		t.Fatalf("a second warning (%v left): a local timer ran beside the gate's notices", left)
	default:
	}

	t.Run("reload ends a session with its reason", func(t *testing.T) {
		c, r, err := tunnel(t, alice, "echo-2", "tcp")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// Opened after the session: the gate tells where it stands.
		ns, errs := streamNotices(openNotices(t, alice))
		n := nextNotice(t, ns, 10*time.Second, "the catch-up deadline")
		if n.Kind != wire.NoticeDeadline || n.Session != r.Session || n.Until != r.Until {
			t.Fatalf("catch-up notice %+v, want the deadline of %s", n, r.Session)
		}
		g.setGrants(grant{rule: "alice-echo", user: "alice", asset: "echo-1", protocol: "tcp"})
		n = nextNotice(t, ns, 10*time.Second, "the end")
		if n.Kind != wire.NoticeEnded || n.Session != r.Session || !strings.HasPrefix(n.Reason, EndPolicy+": no longer allowed") || !n.ByGate {
			t.Fatalf("notice %+v, want session %s ended by the reload", n, r.Session)
		}
		if end := g.waitEnd(r.Session, EndPolicy); end.Reason != n.Reason {
			t.Fatalf("audit end reason %q, notice %q", end.Reason, n.Reason)
		}
		select {
		case err := <-errs:
			t.Fatalf("stream ended: %v", err)
		default:
		}
	})
}

// TestNoticesClosedOnRevokeExpiryAndLimit: a user's streams beyond the
// limit close the oldest; revocation closes the rest and refuses new
// ones (recorded); a credential's end closes its stream.
func TestNoticesClosedOnRevokeExpiryAndLimit(t *testing.T) {
	l := newLab(t)
	g := noticeGate(t, l, func(c *Config) { c.MaxNoticeStreamsPerUser = 2 })
	g.setGrants(
		grant{rule: "dave-echo", user: "dave", asset: "echo-1", protocol: "tcp"},
		grant{rule: "erin-echo", user: "erin", asset: "echo-1", protocol: "tcp", until: time.Now().Add(6 * time.Second)},
	)
	dave := g.mustLogin("dave")
	var errs []<-chan error
	for i := 0; i < 3; i++ {
		_, e := streamNotices(openNotices(t, dave))
		errs = append(errs, e)
	}
	wantClosed := func(e <-chan error, part string) {
		t.Helper()
		select {
		case err := <-e:
			var closed *client.NoticesClosedError
			if !errors.As(err, &closed) || !strings.Contains(closed.Reason, part) {
				t.Fatalf("stream ended with %v, want closed by the gate mentioning %q", err, part)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("stream still open, want closed mentioning %q", part)
		}
	}
	wantClosed(errs[0], "more than 2 notice streams")
	if n := g.srv.notices.count("dave"); n != 2 {
		t.Fatalf("%d streams of dave, want 2", n)
	}

	if _, err := g.srv.RevokeUser("dave", "test: laptop lost"); err != nil {
		t.Fatal(err)
	}
	wantClosed(errs[1], EndRevoked)
	wantClosed(errs[2], EndRevoked)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := dave.Notices(ctx)
	var closed *client.NoticesClosedError
	if !errors.As(err, &closed) || !strings.Contains(closed.Reason, "certificate refused") {
		t.Fatalf("notice stream with a revoked certificate: %v, want refused", err)
	}
	g.waitEvent(EventNoticesRefused, "dave", "revoked")
	for deadline := time.Now().Add(10 * time.Second); g.srv.notices.count("dave") != 0; sleepMs(10) {
		if time.Now().After(deadline) {
			t.Fatal("dave's streams still registered")
		}
	}

	// erin's only grant ends in 6 s, so does the certificate login gives.
	erin := g.mustLogin("erin")
	_, e := streamNotices(openNotices(t, erin))
	wantClosed(e, "credential expired")
}

// TestNoticesSlowReaderDoesNotStall: a notice stream whose client never
// reads fills its socket and its queue; the notices beyond are dropped
// and counted, while the user's session relays, a reload goes through,
// and the count reaches the client once it reads again.
func TestNoticesSlowReaderDoesNotStall(t *testing.T) {
	l := newLab(t)
	go serveEcho(l.listenPlant(t, 7))
	g := noticeGate(t, l, func(c *Config) { c.NoticeQueue = 8 })
	g.setGrants(grant{rule: "bob-echo", user: "bob", asset: "echo-1", protocol: "tcp"})
	bob := g.mustLogin("bob")
	stuck := openNotices(t, bob) // never read until the end
	c, r, err := tunnel(t, bob, "echo-1", "tcp")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	echoRoundTrip(t, c, "before the flood")

	big := strings.Repeat("x", 4<<10)
	var wg sync.WaitGroup
	wg.Add(1)
	flood := make(chan time.Duration, 1)
	go func() {
		defer wg.Done()
		start := time.Now()
		for i := 0; i < 20000; i++ {
			g.srv.notices.publish("bob", wire.Notice{Kind: wire.NoticeDeadline, Session: "flood", Reason: big})
		}
		flood <- time.Since(start)
	}()
	for i := 0; i < 50; i++ {
		start := time.Now()
		echoRoundTrip(t, c, "during the flood")
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("round trip %d took %v while the notice stream was stuck", i, d)
		}
	}
	wg.Wait()
	if d := <-flood; d > 5*time.Second {
		t.Fatalf("publishing 20000 notices took %v: publishing waited for the client", d)
	}
	if g.srv.notices.dropped.Load() == 0 {
		t.Fatal("no notice dropped: the stream never filled")
	}
	// A reload that moves the session's deadline publishes on the stuck
	// stream too; it must not wait for it.
	start := time.Now()
	g.setGrants(grant{rule: "bob-echo", user: "bob", asset: "echo-1", protocol: "tcp", until: time.Now().Add(time.Hour)})
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("reload took %v with a stuck notice stream", d)
	}
	echoRoundTrip(t, c, "after the reload")
	if got := g.srv.Sessions(); len(got) != 1 || got[0].ID != r.Session {
		t.Fatalf("sessions %+v, want %s alive", got, r.Session)
	}

	// Reading again: the frames written after the drops carry the count.
	deadline := time.Now().Add(20 * time.Second)
	for {
		n, err := stuck.Next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				t.Fatal("stream closed before a frame carried the drop count")
			}
			t.Fatal(err)
		}
		if n.Dropped > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no frame carried the drop count")
		}
	}
}

// A stream opened while the user has as many sessions as the per-user
// limit allows gets every session's deadline: the queue holds the
// catch-up, whatever NoticeQueue says, so nothing is dropped before the
// client reads its first frame.
func TestNoticesCatchUpFitsTheQueue(t *testing.T) {
	l := newLab(t)
	go serveEcho(l.listenPlant(t, 7))
	const sessions = 5
	g := noticeGate(t, l, func(c *Config) { c.NoticeQueue, c.MaxSessionsPerUser = 2, sessions })
	g.setGrants(grant{rule: "alice-echo", user: "alice", asset: "echo-1", protocol: "tcp"})
	alice := g.mustLogin("alice")
	want := map[string]bool{}
	for range sessions {
		c, r, err := tunnel(t, alice, "echo-1", "tcp")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		want[r.Session] = true
	}
	ns, _ := streamNotices(openNotices(t, alice))
	for len(want) > 0 {
		n := nextNotice(t, ns, 10*time.Second, fmt.Sprintf("the catch-up deadlines (%d missing)", len(want)))
		if n.Dropped != 0 {
			t.Fatalf("notice %+v: %d notices dropped while catching up", n, n.Dropped)
		}
		if n.Kind == wire.NoticeDeadline {
			delete(want, n.Session)
		}
	}
}

// TestNoticesClosedAtShutdown: Shutdown closes every open notice stream
// with its reason, the final notice written before the connection ends.
func TestNoticesClosedAtShutdown(t *testing.T) {
	l := newLab(t)
	g := noticeGate(t, l)
	g.setGrants(grant{rule: "frank-echo", user: "frank", asset: "echo-1", protocol: "tcp"})
	frank := g.mustLogin("frank")
	// The client has read the hello: the gate registered the stream.
	_, e := streamNotices(openNotices(t, frank))
	reason := EndQuarantine + ": PCR 15 differs"
	if err := g.srv.Shutdown(reason); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-e:
		var closed *client.NoticesClosedError
		if !errors.As(err, &closed) || closed.Reason != reason {
			t.Fatalf("stream ended with %v, want closed by the gate with %q", err, reason)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("notice stream still open after Shutdown")
	}
}

// A stream that registers after closeAll (a handler that passed its
// certificate check while the server shut down) is closed at once with
// closeAll's reason, not left open.
func TestNoticeHubClosesStreamsAddedAfterCloseAll(t *testing.T) {
	h := newNoticeHub(&Config{NoticeQueue: 4, MaxSessionsPerUser: 1, MaxNoticeStreamsPerUser: 2,
		Now: time.Now, Logf: t.Logf})
	stream := func() *noticeStream {
		a, b := net.Pipe()
		t.Cleanup(func() { a.Close(); b.Close() })
		return &noticeStream{hub: h, user: "gina", conn: tls.Server(a, &tls.Config{}),
			q: make(chan wire.Notice, 4), done: make(chan struct{})}
	}
	before := stream()
	h.add(before)
	h.closeAll("gate shutting down: test")
	after := stream()
	h.add(after)
	for name, st := range map[string]*noticeStream{"open before": before, "added after": after} {
		select {
		case <-st.done:
		default:
			t.Fatalf("stream %s closeAll is still open", name)
		}
		if st.final.Kind != wire.NoticeClosed || st.final.Reason != "gate shutting down: test" {
			t.Errorf("stream %s closeAll: final notice %+v, want closed with closeAll's reason", name, st.final)
		}
	}
	if n := h.count("gina"); n != 1 {
		t.Errorf("%d streams registered, want 1 (the one added after closeAll is not)", n)
	}
}

// hookCA runs hook once, after the first Verify made while armed (and
// before that Verify returns): a revocation then falls between a notice
// stream's certificate check and its registration.
type hookCA struct {
	CertAuthority
	mu    sync.Mutex
	armed func()
}

func (c *hookCA) Verify(chain [][]byte) (*Credential, error) {
	cred, err := c.CertAuthority.Verify(chain)
	c.mu.Lock()
	hook := c.armed
	c.armed = nil
	c.mu.Unlock()
	if hook != nil {
		hook()
	}
	return cred, err
}

// TestNoticeStreamRacingRevocation: a revocation that sweeps the user's
// notice streams while one is past its certificate check but not yet
// registered does not leave that stream open (it carried on until its
// certificate expired).
func TestNoticeStreamRacingRevocation(t *testing.T) {
	l := newLab(t)
	hc := &hookCA{}
	g := noticeGate(t, l, func(c *Config) { hc.CertAuthority = c.CA; c.CA = hc })
	g.setGrants(grant{rule: "hank-echo", user: "hank", asset: "echo-1", protocol: "tcp"})
	hank := g.mustLogin("hank")
	hc.mu.Lock()
	hc.armed = func() {
		if _, err := g.srv.RevokeUser("hank", "test: revoked while the stream opened"); err != nil {
			t.Error(err)
		}
	}
	hc.mu.Unlock()
	_, e := streamNotices(openNotices(t, hank))
	select {
	case err := <-e:
		var closed *client.NoticesClosedError
		if !errors.As(err, &closed) || !strings.Contains(closed.Reason, EndRevoked) {
			t.Fatalf("stream ended with %v, want closed as revoked", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a notice stream whose certificate was revoked while it opened stayed open")
	}
}

// TestWarningByTheWallClock: when the gate's wall clock jumps into the
// warning lead before a session's deadline (a resumed VM, a clock set
// forward), the warning goes out at the next sweep, not when the
// monotonic timer armed for it would fire (an hour later here).
func TestWarningByTheWallClock(t *testing.T) {
	l := newLab(t)
	go serveEcho(l.listenPlant(t, 7))
	var offset atomic.Int64
	g := noticeGate(t, l, func(c *Config) {
		c.NoticeWarnBefore = time.Minute
		c.Now = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
		c.IdleTimeout = 24 * time.Hour
	})
	g.setGrants(grant{rule: "ivan-hour", user: "ivan", asset: "echo-1", protocol: "tcp", until: time.Now().Add(time.Hour)})
	ivan := g.mustLogin("ivan")
	c, e := streamNotices(openNotices(t, ivan))
	conn, r, err := tunnel(t, ivan, "echo-1", "tcp")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	echoRoundTrip(t, conn, "within the hour")
	if n := nextNotice(t, c, 10*time.Second, "the deadline"); n.Kind != wire.NoticeDeadline || n.Session != r.Session {
		t.Fatalf("first notice %+v, want session %s's deadline", n, r.Session)
	}
	// 30 s before the end by the gate's clock: inside the one-minute lead.
	offset.Store(int64(time.Until(time.Unix(r.Until, 0)) - 30*time.Second))
	select {
	case n := <-c:
		if n.Kind != wire.NoticeWarning || n.Session != r.Session || n.LeftDuration() > 40*time.Second || n.LeftDuration() < 20*time.Second {
			t.Fatalf("notice after the clock jump %+v, want session %s's warning with about 30 s left", n, r.Session)
		}
	case err := <-e:
		t.Fatalf("notice stream ended: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("no warning within 5 s of the clock jumping into the warning lead")
	}
	echoRoundTrip(t, conn, "warned, not ended")
}

// TestNoticesRevokeAnnouncesTheEndsFirst: a revocation ends the user's
// sessions and announces each end on the user's notice streams before
// it closes them, so the client says which session ended and why
// rather than only that the stream closed.
func TestNoticesRevokeAnnouncesTheEndsFirst(t *testing.T) {
	l := newLab(t)
	go serveEcho(l.listenPlant(t, 7))
	g := noticeGate(t, l)
	g.setGrants(grant{rule: "ivan-echo", user: "ivan", asset: "echo-1", protocol: "tcp"})
	ivan := g.mustLogin("ivan")
	notices, errs := streamNotices(openNotices(t, ivan))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, r, err := ivan.Tunnel(ctx, "echo-1", "tcp")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if n := nextNotice(t, notices, 10*time.Second, "the session's deadline"); n.Kind != wire.NoticeDeadline || n.Session != r.Session {
		t.Fatalf("first notice %+v, want the deadline of session %s", n, r.Session)
	}
	if _, err := g.srv.RevokeUser("ivan", "test: badge lost"); err != nil {
		t.Fatal(err)
	}
	// streamNotices hands over every notice before the stream's end: a
	// notice not there once the end is has not come.
	var end error
	select {
	case n := <-notices:
		if n.Kind != wire.NoticeEnded || n.Session != r.Session || !n.ByGate || !strings.Contains(n.Reason, EndRevoked) {
			t.Fatalf("notice after the revocation %+v, want session %s ended by the gate (%s)", n, r.Session, EndRevoked)
		}
	case end = <-errs:
		select {
		case n := <-notices:
			if n.Kind != wire.NoticeEnded || n.Session != r.Session || !n.ByGate || !strings.Contains(n.Reason, EndRevoked) {
				t.Fatalf("notice after the revocation %+v, want session %s ended by the gate (%s)", n, r.Session, EndRevoked)
			}
		default:
			t.Fatalf("the stream closed (%v) without announcing the session's end", end)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no notice within 10 s of the revocation")
	}
	if end != nil {
		errs = func() <-chan error { c := make(chan error, 1); c <- end; return c }()
	}
	select {
	case err := <-errs:
		var closed *client.NoticesClosedError
		if !errors.As(err, &closed) || !strings.Contains(closed.Reason, EndRevoked) {
			t.Fatalf("stream ended with %v, want closed by the gate (%s)", err, EndRevoked)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("stream still open 10 s after the revocation")
	}
}
