package proxy

import (
	"context"
	"crypto"
	"crypto/tls"
	"fmt"
	"io"
	"net/netip"
	"sync"
	"time"
)

// The gate's TLS 1.3 handshakes are signed with the device key, in the
// TPM, before the client has shown anything: every full handshake from
// anyone on the uplink is one TPM signature, and a TPM signs one thing at
// a time (a discrete one in some 30-100 ms). Unchecked, one host opening
// handshakes in a loop would keep the TPM busy for everybody: other users'
// logins and tunnels, and the audit log's checkpoints, which are signed
// by the same key.
//
// signGate bounds that, the way OpenSSH's MaxStartups bounds its
// unauthenticated connections, except that it queues instead of dropping
// (many tunnels of one engineering tool arrive at once, from one address):
// at most PerSource signatures of one source address are in flight or
// waiting for the TPM, the rest wait at their source, in arrival order;
// at most InFlight of all sources' handshakes are at the identity service
// at once. A source's flood therefore queues behind itself, another
// source's handshake waits for at most PerSource signatures per busy
// source, and a checkpoint (which does not pass this gate) for at most
// InFlight. A handshake that cannot get its turn before its deadline
// fails, naming the wait.
type signGate struct {
	perSource int
	inFlight  chan struct{}
	logf      func(format string, args ...any)

	mu      sync.Mutex
	sources map[netip.Addr]*sourceSlots

	// Lines about the queue, each kind at most once a minute: a flood
	// must not flood the log as well.
	waitLog, giveUpLog *windowLog
}

type sourceSlots struct {
	slots chan struct{}
	users int // handshakes holding or waiting for a slot; guarded by signGate.mu
}

func newSignGate(inFlight, perSource int, logf func(string, ...any)) *signGate {
	return &signGate{perSource: perSource, inFlight: make(chan struct{}, inFlight), logf: logf, sources: map[netip.Addr]*sourceSlots{},
		waitLog:   &windowLog{what: "such lines", limit: 1, every: time.Minute, now: time.Now},
		giveUpLog: &windowLog{what: "such lines", limit: 1, every: time.Minute, now: time.Now}}
}

// sourceKey is what the gate counts per source: the address, and for IPv6
// its /64 (one host's share of a subnet it may pick addresses from).
func sourceKey(a netip.Addr) netip.Addr {
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.Addr()
	}
	return a
}

// acquire waits for src's turn at the TPM, or for ctx to end. The
// returned release must be called once the signature is done.
func (g *signGate) acquire(ctx context.Context, src netip.Addr) (release func(), err error) {
	key := sourceKey(src)
	g.mu.Lock()
	s := g.sources[key]
	if s == nil {
		s = &sourceSlots{slots: make(chan struct{}, g.perSource)}
		g.sources[key] = s
	}
	s.users++
	ahead := s.users - 1
	g.mu.Unlock()
	drop := func() {
		g.mu.Lock()
		if s.users--; s.users == 0 {
			delete(g.sources, key)
		}
		g.mu.Unlock()
	}
	if ahead >= g.perSource {
		if ok, suffix := g.waitLog.allow(); ok {
			g.logf("proxy: TLS handshakes from %s wait their turn for the device key: %d ahead of this one, of which %d may be signed at a time%s",
				src, ahead, g.perSource, suffix)
		}
	}
	start := time.Now()
	select {
	case s.slots <- struct{}{}:
	case <-ctx.Done():
		drop()
		return nil, g.gaveUp(ctx, fmt.Sprintf("behind %d other handshakes from %s (at most %d of one address are signed at a time)", ahead, src, g.perSource), start)
	}
	select {
	case g.inFlight <- struct{}{}:
	case <-ctx.Done():
		<-s.slots
		drop()
		return nil, g.gaveUp(ctx, fmt.Sprintf("from %s behind other addresses' handshakes (at most %d are signed at a time)", src, cap(g.inFlight)), start)
	}
	return func() {
		<-g.inFlight
		<-s.slots
		drop()
	}, nil
}

// gaveUp words, and logs, a handshake that did not get its turn before
// its deadline: crypto/tls reports such a handshake only as its
// context's end.
func (g *signGate) gaveUp(ctx context.Context, behind string, start time.Time) error {
	err := fmt.Errorf("TLS handshake gave up after %v waiting for the device key %s: %w", time.Since(start).Round(time.Millisecond), behind, context.Cause(ctx))
	if ok, suffix := g.giveUpLog.allow(); ok {
		g.logf("proxy: %v%s", err, suffix)
	}
	return err
}

// busy reports how many source addresses hold or wait for a slot (tests).
func (g *signGate) busy() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.sources)
}

// getCertificate is a tls.Config.GetCertificate serving cert, whose key
// signs each handshake only in its turn at g.
func (g *signGate) getCertificate(cert *tls.Certificate) func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	signer, ok := cert.PrivateKey.(crypto.Signer)
	if !ok {
		// crypto/tls would refuse it too; say so at the handshake.
		return func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return nil, fmt.Errorf("proxy: the gate's certificate key (%T) cannot sign", cert.PrivateKey)
		}
	}
	return func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		c := *cert
		c.PrivateKey = &gatedSigner{gate: g, key: signer, ctx: hello.Context(), src: sourceOf(hello.Conn)}
		return &c, nil
	}
}

// gatedSigner signs one handshake with key once its turn at gate came.
type gatedSigner struct {
	gate *signGate
	key  crypto.Signer
	ctx  context.Context // the handshake's
	src  netip.Addr
}

func (s *gatedSigner) Public() crypto.PublicKey { return s.key.Public() }

func (s *gatedSigner) Sign(rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	release, err := s.gate.acquire(s.ctx, s.src)
	if err != nil {
		return nil, err
	}
	defer release()
	return s.key.Sign(rand, digest, opts)
}

// SignMessage hands the whole message on (the identity service's signer
// signs only messages it recognises; crypto.SignMessage hashes for a key
// that takes digests).
func (s *gatedSigner) SignMessage(rand io.Reader, msg []byte, opts crypto.SignerOpts) ([]byte, error) {
	release, err := s.gate.acquire(s.ctx, s.src)
	if err != nil {
		return nil, err
	}
	defer release()
	return crypto.SignMessage(s.key, rand, msg, opts)
}

var _ crypto.MessageSigner = (*gatedSigner)(nil)

// windowLog lets through at most limit lines of one kind per window (a
// minute) and says, on the first line of a later window, how many it left
// out: one failed handshake is worth a line, a flood of them is not worth
// the log's ring.
type windowLog struct {
	what  string // the lines, in the count of those left out
	limit int
	every time.Duration
	now   func() time.Time

	mu      sync.Mutex
	start   time.Time
	n       int
	skipped int
}

// allow reports whether a line may be logged now and, if so, the suffix
// that accounts for the lines left out before it ("" when none were).
func (w *windowLog) allow() (bool, string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := w.now()
	if w.start.IsZero() || now.Sub(w.start) >= w.every {
		w.start, w.n = now, 0
	}
	if w.n >= w.limit {
		w.skipped++
		return false, ""
	}
	w.n++
	if w.skipped == 0 {
		return true, ""
	}
	suffix := fmt.Sprintf(" (%d %s not logged before this one: at most %d are logged a %s)", w.skipped, w.what, w.limit, w.every)
	w.skipped = 0
	return true, suffix
}

// handshakeFailed logs a failed handshake, within s.hsFails's bounds.
func (s *Server) handshakeFailed(format string, args ...any) {
	if ok, suffix := s.hsFails.allow(); ok {
		s.cfg.Logf(format+"%s", append(args, suffix)...)
	}
}

// pendingHandshakes bounds the connections whose TLS handshake is under
// way, as OpenSSH's MaxStartups does: each holds a goroutine and its
// buffers until the handshake ends or HandshakeTimeout passes, so a host
// opening connections faster than they time out would otherwise take the
// gate's memory. One more than MaxPendingHandshakesPerSource of one source
// address (an IPv6 /64), or than MaxPendingHandshakes in all, is closed
// unanswered.
type pendingHandshakes struct {
	maxTotal, maxPerSource int

	mu       sync.Mutex
	total    int
	bySource map[netip.Addr]int
}

func newPendingHandshakes(maxTotal, maxPerSource int) *pendingHandshakes {
	return &pendingHandshakes{maxTotal: maxTotal, maxPerSource: maxPerSource, bySource: map[netip.Addr]int{}}
}

// enter counts a handshake from src, or says why it may not begin; leave
// must be called once it has ended.
func (p *pendingHandshakes) enter(src netip.Addr) (leave func(), err error) {
	key := sourceKey(src)
	p.mu.Lock()
	defer p.mu.Unlock()
	if n := p.bySource[key]; n >= p.maxPerSource {
		return nil, fmt.Errorf("closed unanswered: %d TLS handshakes from %s are under way, at most %d of one address", n, src, p.maxPerSource)
	}
	if p.total >= p.maxTotal {
		return nil, fmt.Errorf("closed unanswered: %d TLS handshakes are under way, at most %d", p.total, p.maxTotal)
	}
	p.total++
	p.bySource[key]++
	return func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.total--
		if p.bySource[key]--; p.bySource[key] == 0 {
			delete(p.bySource, key)
		}
	}, nil
}

// count is how many handshakes are under way, and from how many sources (tests).
func (p *pendingHandshakes) count() (total, sources int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.total, len(p.bySource)
}
