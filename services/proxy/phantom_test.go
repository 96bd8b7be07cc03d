package proxy

import (
	"context"
	"errors"
	"io"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/otgate/otgate/services/proxy/wire"
)

// timersStopped fails t when a timer of sess (its end, and with warning
// its warning) is still armed: a discarded admission left it behind.
// (It stops what it finds.)
func timersStopped(t *testing.T, sess *session, what string, warning bool) {
	t.Helper()
	sess.mu.Lock()
	defer sess.mu.Unlock()
	if sess.timer != nil && sess.timer.Stop() {
		t.Errorf("%s: session %s's end timer still armed", what, sess.id)
	}
	if warning && sess.note.warn != nil && sess.note.warn.Stop() {
		t.Errorf("%s: session %s's warning timer still armed", what, sess.id)
	}
}

// TestNoPhantomNotices: a reload that moves the deadline of a session
// still being admitted (registered, not accepted) arms nothing that
// outlives the admission and announces nothing: when that admission is
// discarded (decided again after the reload, or refused because the
// asset cannot be reached), its end and warning timers are stopped, and
// the user's notice streams never hear of a session the client was not
// told it had (no deadline, no warning, no end).
func TestNoPhantomNotices(t *testing.T) {
	l := newLab(t)
	go serveEcho(l.listenPlant(t, 7))
	hook, dialHook := &atomic.Pointer[func()]{}, &atomic.Pointer[func()]{}
	g := noticeGate(t, l, func(c *Config) {
		load := c.LoadPolicy
		c.LoadPolicy = func() (*Policy, error) {
			p, err := load()
			if err != nil {
				return nil, err
			}
			p.Decider = hookDecider{p.Decider, hook}
			return p, nil
		}
		dial := c.DialContext
		c.DialContext = func(ctx context.Context, ap netip.AddrPort) (io.ReadWriteCloser, error) {
			if f := dialHook.Swap(nil); f != nil {
				(*f)()
				return nil, errors.New("test: no route to the asset")
			}
			return dial(ctx, ap)
		}
	})
	g.setGrants(grant{rule: "alice-echo", user: "alice", asset: "echo-1", protocol: "tcp"})
	alice := g.mustLogin("alice")
	notices, errs := streamNotices(openNotices(t, alice)) // registered once its hello is read
	// The reload moves the grant's end to 6 s from now (room for the
	// steps below on a loaded machine): a warning timer armed for an
	// admission would fire in 5 s (the lead is 1 s).
	until := time.Now().Add(6 * time.Second)
	reload := func(until time.Time) {
		tab := grantTable{{rule: "alice-echo", user: "alice", asset: "echo-1", protocol: "tcp", until: until}}
		g.grants.Store(&tab)
		if _, err := g.srv.Reload(); err != nil {
			t.Errorf("reload: %v", err)
		}
	}
	aliceSession := func() *session {
		for _, s := range g.srv.reg.snapshot() {
			if s.user == "alice" {
				return s
			}
		}
		return nil
	}

	// 1. The reload lands after the registration and before admit looks
	// at the epoch (held at shuttingDown's lock): the session is
	// discarded and the tunnel decided again, under a new session id.
	var first *session
	f := func() {
		g.srv.mu.Lock()
		go func() {
			defer g.srv.mu.Unlock()
			for first = aliceSession(); first == nil; first = aliceSession() {
				time.Sleep(time.Millisecond)
			}
			reload(until)
		}()
	}
	hook.Store(&f)
	c, r, err := tunnel(t, alice, "echo-1", "tcp")
	if err != nil {
		t.Fatalf("tunnel decided again after a reload that kept its grant: %v", err)
	}
	defer c.Close()
	if first == nil || first.id == r.Session {
		t.Fatal("the admission was not decided again: the test proves nothing")
	}
	// Its warning timer is left to fire (a notice, seen below).
	timersStopped(t, first, "decided again", false)

	// 2. The reload (moving the end by another half second) lands while
	// the asset is dialled, and the dial fails.
	var dialled *session
	d := func() {
		for _, s := range g.srv.reg.snapshot() {
			if s.user == "alice" && s.id != r.Session {
				dialled = s
			}
		}
		reload(until.Add(500 * time.Millisecond))
	}
	dialHook.Store(&d)
	_, _, err = tunnel(t, alice, "echo-1", "tcp")
	refused := denied(t, err, "unreachable")
	if dialled == nil || dialled.id != refused.Session {
		t.Fatalf("dial hook saw session %v, the refusal names %q", dialled, refused.Session)
	}
	for deadline := time.Now().Add(10 * time.Second); g.srv.reg.count() > 1; {
		if time.Now().After(deadline) {
			t.Fatal("the refused tunnel's session still registered after 10 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	timersStopped(t, dialled, "asset unreachable", true)

	// Past the first session's warning and deadline: every notice is about
	// the accepted session, which gets its deadline, warning and end.
	var kinds []string
	for {
		var n wire.Notice
		select {
		case n = <-notices:
		case err := <-errs:
			t.Fatalf("notice stream ended: %v", err)
		case <-time.After(10 * time.Second):
			t.Fatalf("no end of session %s within 10 s (notices: %v)", r.Session, kinds)
		}
		if n.Session != r.Session {
			t.Errorf("notice %+v about session %s, which the client was never accepted for (accepted: %s)", n, n.Session, r.Session)
			continue
		}
		kinds = append(kinds, n.Kind)
		if n.Kind == wire.NoticeEnded {
			break
		}
	}
	// A warning timer of the discarded sessions fires at the same time as
	// the accepted one's; a moment more for it to come through.
	select {
	case n := <-notices:
		t.Errorf("notice %+v after the only accepted session ended", n)
	case <-time.After(500 * time.Millisecond):
	}
	timersStopped(t, first, "decided again", true)
}
