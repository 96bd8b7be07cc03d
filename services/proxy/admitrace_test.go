package proxy

import (
	"context"
	"crypto"
	"io"
	"net/netip"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/otgate/otgate/audit"
)

// hookDecider runs a hook once, inside a tunnel's decision: after the
// decision is made and before the proxy registers the session, which is
// where a reload or a revocation that looks at the live sessions cannot
// see it yet.
type hookDecider struct {
	Decider
	hook *atomic.Pointer[func()]
}

func (d hookDecider) Decide(r DecisionRequest) Decision {
	dec := d.Decider.Decide(r)
	if f := d.hook.Swap(nil); f != nil {
		(*f)()
	}
	return dec
}

// TestAdmissionRacesReloadAndRevoke: a reload that takes the grant away,
// or a revocation of the user, landing between a tunnel's decision and
// its registration among the live sessions, still ends that tunnel's
// chance: it is refused (the reload's and the revocation's sweep of the
// live sessions did not see it, so the proxy decides it again). A reload
// that keeps the grant lets the tunnel through.
func TestAdmissionRacesReloadAndRevoke(t *testing.T) {
	l := newLab(t)
	go serveEcho(l.listenPlant(t, 7))
	hook := &atomic.Pointer[func()]{}
	g := newGate(t, l, func(c *Config) {
		load := c.LoadPolicy
		c.LoadPolicy = func() (*Policy, error) {
			p, err := load()
			if err != nil {
				return nil, err
			}
			p.Decider = hookDecider{p.Decider, hook}
			return p, nil
		}
	})
	grants := []grant{
		{rule: "alice-echo", user: "alice", asset: "echo-1", protocol: "tcp"},
		{rule: "bob-echo", user: "bob", asset: "echo-1", protocol: "tcp"},
	}
	g.setGrants(grants...)
	alice, bob := g.mustLogin("alice"), g.mustLogin("bob")
	arm := func(f func()) { hook.Store(&f) }
	reload := func(gs ...grant) func() {
		return func() {
			tab := grantTable(gs)
			g.grants.Store(&tab)
			if _, err := g.srv.Reload(); err != nil {
				t.Errorf("reload: %v", err)
			}
		}
	}

	t.Run("reload keeping the grant", func(t *testing.T) {
		arm(reload(grants...))
		c, _, err := tunnel(t, alice, "echo-1", "tcp")
		if err != nil {
			t.Fatalf("a reload that keeps the grant refused the tunnel: %v", err)
		}
		echoRoundTrip(t, c, "still granted")
		c.Close()
	})

	t.Run("reload taking the grant away", func(t *testing.T) {
		arm(reload(grants[1]))
		c, r, err := tunnel(t, alice, "echo-1", "tcp")
		if err == nil {
			c.Close()
			t.Fatalf("tunnel accepted (session %s) under a grant a reload had removed", r.Session)
		}
		denied(t, err, "no grant gives alice tcp on echo-1")
		g.waitEvent(EventSessionRefused, "alice", "no grant gives alice")
	})

	t.Run("revocation", func(t *testing.T) {
		arm(func() {
			if _, err := g.srv.RevokeUser("bob", "test: revoked during admission"); err != nil {
				t.Errorf("revoke: %v", err)
			}
		})
		c, r, err := tunnel(t, bob, "echo-1", "tcp")
		if err == nil {
			c.Close()
			t.Fatalf("tunnel accepted (session %s) with a certificate revoked before it was registered", r.Session)
		}
		denied(t, err, "revoked")
		g.waitEvent(EventSessionRefused, "bob", "revoked")
	})
}

// TestDeadlineByTheWallClock: a session's end timer runs on the
// monotonic clock, which stands still while the gate (a VM, say) is
// suspended and ignores the clock being set forward; the sweep ends a
// session whose deadline has passed by the wall clock all the same.
func TestDeadlineByTheWallClock(t *testing.T) {
	l := newLab(t)
	go serveEcho(l.listenPlant(t, 7))
	var offset atomic.Int64
	g := newGate(t, l, func(c *Config) {
		c.Now = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
		c.IdleTimeout = 24 * time.Hour // the jump must not end it as idle
	})
	g.setGrants(grant{rule: "alice-hour", user: "alice", asset: "echo-1", protocol: "tcp", until: time.Now().Add(time.Hour)})
	alice := g.mustLogin("alice")
	c, r, err := tunnel(t, alice, "echo-1", "tcp")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	echoRoundTrip(t, c, "within the hour")
	offset.Store(int64(2 * time.Hour)) // the wall clock jumps past the window's end
	waitClosed(t, c, 10*time.Second)
	// The window's end and the certificate's (capped to it at login,
	// and to the second) coincide: either may be the reason named.
	g.waitEnd(r.Session, EndUntil+": ")
}

// TestEndDuringStartRecordOrDial: a revocation that lands after the
// tunnel's session is registered (its sweep ends the session) but while
// the session-start record is being written, or while the asset is being
// dialled, refuses the tunnel with the revocation as its reason: the
// client is never told it was accepted, and in the first case the asset
// never sees a connection.
func TestEndDuringStartRecordOrDial(t *testing.T) {
	l := newLab(t)
	go serveEcho(l.listenPlant(t, 7))
	startHook, dialHook := &atomic.Pointer[func()]{}, &atomic.Pointer[func()]{}
	var dials atomic.Int32
	g := newGate(t, l, func(c *Config) {
		// The proxy's own log, whose clock runs the hook while it
		// stamps the next record: the session start.
		log, err := audit.Open(filepath.Join(t.TempDir(), "audit"), c.Certificate.PrivateKey.(crypto.Signer),
			audit.WithClock(func() time.Time {
				if f := startHook.Swap(nil); f != nil {
					(*f)()
				}
				return time.Now()
			}))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { log.Close() })
		c.Log = log
		dial := c.DialContext
		c.DialContext = func(ctx context.Context, ap netip.AddrPort) (io.ReadWriteCloser, error) {
			dials.Add(1)
			if f := dialHook.Swap(nil); f != nil {
				(*f)()
			}
			return dial(ctx, ap)
		}
	})
	g.setGrants(grant{rule: "alice-echo", user: "alice", asset: "echo-1", protocol: "tcp"},
		grant{rule: "bob-echo", user: "bob", asset: "echo-1", protocol: "tcp"})
	alice, bob := g.mustLogin("alice"), g.mustLogin("bob")
	// Through the user store, whose events go to another log: the
	// proxy's own is busy writing the record that runs the hook. Its
	// revocation hook rechecks the live sessions (RecheckUser).
	revoke := func(user string) *func() {
		f := func() {
			if _, err := g.users.Revoke(user, "test: revoked during admission"); err != nil {
				t.Errorf("revoke: %v", err)
			}
		}
		return &f
	}

	t.Run("while the start record is written", func(t *testing.T) {
		before := dials.Load()
		startHook.Store(revoke("alice"))
		c, r, err := tunnel(t, alice, "echo-1", "tcp")
		if err == nil {
			c.Close()
			t.Fatalf("tunnel accepted (session %s) although its session was ended before the asset was dialled", r.Session)
		}
		denied(t, err, "revoked")
		if startHook.Load() != nil {
			t.Fatal("the hook did not run: the test proves nothing")
		}
		if n := dials.Load() - before; n != 0 {
			t.Errorf("the asset was dialled %d times for a session that had ended", n)
		}
	})

	t.Run("while the asset is dialled", func(t *testing.T) {
		dialHook.Store(revoke("bob"))
		c, r, err := tunnel(t, bob, "echo-1", "tcp")
		if err == nil {
			c.Close()
			t.Fatalf("tunnel accepted (session %s) although its session was ended during the dial", r.Session)
		}
		denied(t, err, "revoked")
		if dialHook.Load() != nil {
			t.Fatal("the hook did not run: the test proves nothing")
		}
	})
}
