package proxy

import (
	"crypto"
	"crypto/tls"
	"io"
	"net"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/otgate/otgate/services/proxy/wire"
)

// heldSigner is the device key standing in for a discrete TPM, which signs
// one thing at a time in tens of milliseconds (swtpm answers at once):
// each signature waits for a token on release, or for release to close.
// It counts the signatures under way.
type heldSigner struct {
	key     crypto.Signer
	release chan struct{}
	inside  atomic.Int32
	most    atomic.Int32
	signed  atomic.Int32
	once    sync.Once
}

// letAll lets every signature through from now on.
func (h *heldSigner) letAll() { h.once.Do(func() { close(h.release) }) }

func (h *heldSigner) Public() crypto.PublicKey { return h.key.Public() }

// hold counts a signature under way and waits for its token.
func (h *heldSigner) hold() {
	n := h.inside.Add(1)
	for {
		m := h.most.Load()
		if n <= m || h.most.CompareAndSwap(m, n) {
			break
		}
	}
	<-h.release
	h.inside.Add(-1)
	h.signed.Add(1)
}

func (h *heldSigner) Sign(rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	h.hold()
	return h.key.Sign(rand, digest, opts)
}

func (h *heldSigner) SignMessage(rand io.Reader, msg []byte, opts crypto.SignerOpts) ([]byte, error) {
	h.hold()
	return crypto.SignMessage(h.key, rand, msg, opts)
}

// gateWithHeldKey is a gate whose listener's certificate is the device
// certificate with its key behind a heldSigner (the user CA and the audit
// log keep the device key itself: they do not pass the handshake queue).
func gateWithHeldKey(t *testing.T, opts ...func(*Config)) (*gate, *heldSigner) {
	t.Helper()
	l := newLab(t)
	h := &heldSigner{release: make(chan struct{})}
	g := newGate(t, l, append([]func(*Config){func(c *Config) {
		h.key = c.Certificate.PrivateKey.(crypto.Signer)
		cert := *c.Certificate
		cert.PrivateKey = h
		c.Certificate = &cert
	}}, opts...)...)
	// Before the gate's own cleanup, which waits for its handshakes.
	t.Cleanup(h.letAll)
	return g, h
}

// handshakeFrom runs a TLS 1.3 handshake with the gate from the loopback
// address from (127.0.0.0/8 is all on lo) and reports its outcome on done.
func handshakeFrom(g *gate, from string, done chan<- error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", g.addr)
	if err != nil {
		done <- err
		return
	}
	defer c.Close()
	// What the client would verify does not matter here: the gate's key
	// signs the handshake before the client checks anything.
	tc := tls.Client(c, &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true, NextProtos: []string{wire.ALPNTunnel}})
	c.SetDeadline(time.Now().Add(30 * time.Second))
	done <- tc.Handshake()
}

func waitInside(t *testing.T, h *heldSigner, n int32) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for h.inside.Load() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d signatures under way, want %d", h.inside.Load(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestHandshakeSignaturesQueuePerSource: one address opening 20 handshakes
// at once has two signed at a time and the rest queued (none dropped);
// another address's handshake is signed as soon as one of those two is
// done, not after the whole queue; every handshake completes.
func TestHandshakeSignaturesQueuePerSource(t *testing.T) {
	g, h := gateWithHeldKey(t)
	const flood = 20
	floodDone := make(chan error, flood)
	for range flood {
		go handshakeFrom(g, "127.0.0.1", floodDone)
	}
	waitInside(t, h, 2)
	time.Sleep(200 * time.Millisecond) // nothing more enters while two are signed
	if n := h.inside.Load(); n != 2 {
		t.Fatalf("%d handshakes of one address at the key at once, want 2", n)
	}
	otherDone := make(chan error, 1)
	go handshakeFrom(g, "127.0.0.2", otherDone)
	// The other address waits only for the flood's two under way: the
	// first signature done lets it in, the next two end both under way.
	releases := 0
wait:
	for {
		select {
		case err := <-otherDone:
			if err != nil {
				t.Fatalf("handshake from 127.0.0.2: %v", err)
			}
			break wait
		case <-time.After(300 * time.Millisecond):
		}
		if releases == 3 {
			t.Fatalf("handshake from 127.0.0.2 not done after 3 signatures (%d signed, %d under way): it queued behind 127.0.0.1's",
				h.signed.Load(), h.inside.Load())
		}
		h.release <- struct{}{}
		releases++
	}
	for range flood - int(h.signed.Load()) + 1 { // the other's was one
		h.release <- struct{}{}
	}
	for i := range flood {
		select {
		case err := <-floodDone:
			if err != nil {
				t.Fatalf("flood handshake %d: %v (queued handshakes must not be dropped)", i, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%d of %d flood handshakes done", i, flood)
		}
	}
	if m := h.most.Load(); m > 2 {
		t.Errorf("%d signatures at the key at once, want at most 2", m)
	}
	deadline := time.Now().Add(5 * time.Second)
	for g.srv.signs.busy() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the queue still counts %d source addresses after every handshake ended", g.srv.signs.busy())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestHandshakeWaitEndsAtItsDeadline: a handshake that cannot get its turn
// before HandshakeTimeout fails, and the gate's log says what it waited
// for; its place in the queue is given up.
func TestHandshakeWaitEndsAtItsDeadline(t *testing.T) {
	g, h := gateWithHeldKey(t, func(c *Config) { c.HandshakeTimeout = 700 * time.Millisecond })
	done := make(chan error, 3)
	for range 3 {
		go handshakeFrom(g, "127.0.0.1", done)
	}
	waitInside(t, h, 2)
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("the third handshake completed while the key was held")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the third handshake did not end at its deadline")
	}
	deadline := time.Now().Add(5 * time.Second)
	gaveUp := regexp.MustCompile(`TLS handshake gave up after [0-9.]+m?s waiting for the device key behind 2 other handshakes from 127\.0\.0\.1 \(at most 2 of one address are signed at a time\): context deadline exceeded`)
	for !gaveUp.MatchString(g.out.text()) {
		if time.Now().After(deadline) {
			t.Fatalf("the gate's log does not say what the handshake waited for:\n%s", g.out.text())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(g.out.text(), "TLS handshakes from 127.0.0.1 wait their turn for the device key: 2 ahead of this one") {
		t.Errorf("the gate's log does not say that handshakes queue:\n%s", g.out.text())
	}
	h.letAll()
	for range 2 {
		<-done // the two under way end one way or the other (their deadline passed)
	}
	deadline = time.Now().Add(5 * time.Second)
	for g.srv.signs.busy() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the queue still counts %d source addresses", g.srv.signs.busy())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestWindowLogBoundsAFlood: at most limit lines a window; the first line
// of a later window counts those left out.
func TestWindowLogBoundsAFlood(t *testing.T) {
	now := time.Unix(1000, 0)
	w := &windowLog{what: "failed handshakes", limit: 3, every: time.Minute, now: func() time.Time { return now }}
	logged := 0
	for range 10 {
		if ok, suffix := w.allow(); ok {
			logged++
			if suffix != "" {
				t.Errorf("line %d carries %q; nothing was left out yet", logged, suffix)
			}
		}
	}
	if logged != 3 {
		t.Fatalf("%d of 10 lines logged in one window, want 3", logged)
	}
	now = now.Add(59 * time.Second)
	if ok, _ := w.allow(); ok {
		t.Fatal("a fourth line logged within the window")
	}
	now = now.Add(2 * time.Second)
	ok, suffix := w.allow()
	if !ok || !strings.Contains(suffix, "8 failed handshakes not logged before this one") {
		t.Fatalf("first line of the next window: %v %q, want it logged, counting the 8 left out", ok, suffix)
	}
	if ok, suffix := w.allow(); !ok || suffix != "" {
		t.Errorf("second line of the window: %v %q, want it logged, nothing left out", ok, suffix)
	}
}

// TestPendingHandshakesBounded: with the key held, handshakes pile up; one
// more than the per-source bound, or than the total bound, is closed at
// once (the client's handshake fails without waiting), the log says why,
// and once the pile has drained new connections are served again.
func TestPendingHandshakesBounded(t *testing.T) {
	g, h := gateWithHeldKey(t, func(c *Config) { c.MaxPendingHandshakesPerSource, c.MaxPendingHandshakes = 3, 4 })
	held := make(chan error, 4)
	for range 3 {
		go handshakeFrom(g, "127.0.0.1", held)
	}
	waitInside(t, h, 2) // the third waits for its turn at the key, pending too
	waitPending := func(want int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			if n, _ := g.srv.pending.count(); n == want {
				return
			}
			if time.Now().After(deadline) {
				n, _ := g.srv.pending.count()
				t.Fatalf("%d handshakes under way, want %d", n, want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitPending(3)
	refused := func(from, why string) {
		t.Helper()
		done := make(chan error, 1)
		start := time.Now()
		go handshakeFrom(g, from, done)
		if err := <-done; err == nil {
			t.Fatalf("a handshake from %s completed past the bound", from)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("the handshake from %s past the bound failed after %v: it waited instead of being closed", from, d)
		}
		deadline := time.Now().Add(5 * time.Second)
		for !strings.Contains(g.out.text(), why) {
			if time.Now().After(deadline) {
				t.Fatalf("the gate's log does not say %q:\n%s", why, g.out.text())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	refused("127.0.0.1", "closed unanswered: 3 TLS handshakes from 127.0.0.1 are under way, at most 3 of one address")
	go handshakeFrom(g, "127.0.0.2", held) // another address: the fourth in all
	waitPending(4)
	refused("127.0.0.3", "closed unanswered: 4 TLS handshakes are under way, at most 4")
	h.letAll()
	for i := range 4 {
		if err := <-held; err != nil {
			t.Fatalf("held handshake %d: %v (those within the bounds must complete)", i, err)
		}
	}
	waitPending(0)
	if _, sources := g.srv.pending.count(); sources != 0 {
		t.Errorf("%d source addresses still counted", sources)
	}
	done := make(chan error, 1)
	go handshakeFrom(g, "127.0.0.1", done)
	if err := <-done; err != nil {
		t.Fatalf("a handshake after the pile drained: %v", err)
	}
}
