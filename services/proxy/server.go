package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/otgate/otgate/audit"
	"github.com/otgate/otgate/services/proxy/wire"
)

// Server is the proxy. New loads the policy; Serve accepts connections.
type Server struct {
	cfg Config
	tls *tls.Config
	// signs queues the handshakes' signatures by the device key.
	signs *signGate
	// hsFails bounds the log lines of failed handshakes, loginFails those
	// of refused logins.
	hsFails, loginFails *windowLog
	// pending bounds the handshakes under way.
	pending *pendingHandshakes
	policy  atomic.Pointer[Policy]
	reg     *registry
	// notices holds the clients' notice streams (notices.go).
	notices *noticeHub
	// mbs is the Modbus/TCP Security listener's, once it serves.
	mbs atomic.Pointer[modbusSecurity]

	reloadMu sync.Mutex
	// admitEpoch is bumped by every reload and revocation check before
	// it sweeps the live sessions; a tunnel admitted meanwhile is decided
	// again (admit).
	admitEpoch atomic.Uint64
	ctx        context.Context
	cancel     context.CancelFunc
	wg         sync.WaitGroup

	mu        sync.Mutex
	listeners map[net.Listener]bool
	closed    bool
	closedWhy string // Shutdown's reason
}

// New checks cfg, loads the policy and returns a server ready to Serve.
func New(cfg Config) (*Server, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	p, err := cfg.LoadPolicy()
	if err != nil {
		return nil, fmt.Errorf("proxy: load policy: %w", err)
	}
	if err := checkPolicy(p); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, reg: newRegistry(cfg.MaxSessions, cfg.MaxSessionsPerUser), listeners: map[net.Listener]bool{}}
	s.notices = newNoticeHub(&s.cfg)
	s.policy.Store(p)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.signs = newSignGate(cfg.HandshakeSigns, cfg.HandshakeSignsPerSource, cfg.Logf)
	s.hsFails = &windowLog{what: "failed handshakes", limit: 20, every: time.Minute, now: time.Now}
	s.loginFails = &windowLog{what: "refused logins", limit: 20, every: time.Minute, now: time.Now}
	s.pending = newPendingHandshakes(cfg.MaxPendingHandshakes, cfg.MaxPendingHandshakesPerSource)
	s.tls = &tls.Config{
		MinVersion: tls.VersionTLS13,
		// Each full handshake is signed by the device key (the TPM) in
		// its turn: see signGate.
		GetCertificate: s.signs.getCertificate(cfg.Certificate),
		NextProtos:     []string{wire.ALPNTunnel, wire.ALPNLogin, wire.ALPNNotices},
		// The proxy verifies client certificates itself (CA.Verify) after
		// the handshake, so that an expired or revoked certificate is
		// refused with its reason in the audit log instead of a bare
		// TLS alert.
		ClientAuth: tls.RequestClientCert,
	}
	s.wg.Add(1)
	go s.sweep()
	return s, nil
}

func checkPolicy(p *Policy) error {
	if p == nil || p.Site == nil || p.Decider == nil {
		return errors.New("proxy: policy loader returned no site or no decider")
	}
	return nil
}

// Serve accepts connections on ln until Close. ln is a plain TCP listener;
// Serve does the TLS.
func (s *Server) Serve(ln net.Listener) error { return s.serve(ln, s.handle) }

// serve accepts connections on ln until Close, each handled by handle.
func (s *Server) serve(ln net.Listener, handle func(net.Conn)) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return net.ErrClosed
	}
	s.listeners[ln] = true
	s.mu.Unlock()
	for {
		c, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return fmt.Errorf("proxy: accept on %s: %w", ln.Addr(), err)
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			handle(c)
		}()
	}
}

// Close stops the listeners, ends every live session (recorded as
// EndShutdown) and waits for the handlers.
func (s *Server) Close() error { return s.Shutdown(EndShutdown) }

// Shutdown is Close with reason recorded as the end of every live session.
func (s *Server) Shutdown(reason string) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.closedWhy = reason
	if reason == "" {
		s.closedWhy = EndShutdown
	}
	for ln := range s.listeners {
		ln.Close()
	}
	s.mu.Unlock()
	for _, sess := range s.reg.snapshot() {
		sess.end(reason)
	}
	s.notices.closeAll(reason)
	s.cancel()
	s.wg.Wait()
	return nil
}

// shuttingDown returns Shutdown's reason once it has begun. Shutdown sets
// it before it ends the live sessions: a session registered before this
// says no is among those it ends.
func (s *Server) shuttingDown() (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closedWhy, s.closed
}

// Policy returns the policy in force.
func (s *Server) Policy() *Policy { return s.policy.Load() }

// handshake is the server's side of c's TLS handshake with cfg, within
// HandshakeTimeout (whose deadline stays set on c for what the client
// must send next); on failure c is closed and the error returned.
func (s *Server) handshake(c net.Conn, cfg *tls.Config) (*tls.Conn, error) {
	leave, err := s.pending.enter(sourceOf(c))
	if err != nil {
		c.Close()
		return nil, err
	}
	defer leave()
	c.SetDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
	tc := tls.Server(c, cfg)
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.HandshakeTimeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return tc, nil
}

func (s *Server) handle(c net.Conn) {
	tc, err := s.handshake(c, s.tls)
	if err != nil {
		s.handshakeFailed("proxy: TLS handshake with %s: %v", c.RemoteAddr(), err)
		return
	}
	switch tc.ConnectionState().NegotiatedProtocol {
	case wire.ALPNTunnel:
		s.tunnel(tc)
	case wire.ALPNLogin:
		s.login(tc)
	case wire.ALPNNotices:
		s.noticeStream(tc)
	default:
		s.cfg.Logf("proxy: %s negotiated no otgate protocol (ALPN %q): closing", c.RemoteAddr(), tc.ConnectionState().NegotiatedProtocol)
		tc.Close()
	}
}

// answer writes one frame to tc with a fresh write deadline (timeout):
// the deadline set before a request or a handshake bounds the client's
// part, not the gate's own work before the answer (argon2id, the audit
// log's fsync, the asset's connect). When the write fails, the
// connection is abandoned without a close_notify: crypto/tls numbered the
// record that never went out, so the alert would reach the client out of
// sequence and fail there as "tls: bad record MAC".
func answer(tc *tls.Conn, v any, timeout time.Duration) error {
	tc.SetWriteDeadline(time.Now().Add(timeout))
	err := wire.WriteFrame(tc, v)
	if err != nil {
		tc.NetConn().Close()
	}
	return err
}

// sweep ends idle sessions, and sessions past their deadline by the
// wall clock (session.pastUntil), and warns of a deadline near by the
// wall clock (session.noticeWarnIfDue).
func (s *Server) sweep() {
	defer s.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		now := s.cfg.Now()
		for _, sess := range s.reg.snapshot() {
			if why, past := sess.pastUntil(now); past {
				sess.end(why)
			} else if now.UnixNano()-sess.lastActive.Load() > int64(s.cfg.IdleTimeout) {
				sess.end(EndIdle)
			} else {
				sess.noticeWarnIfDue(now)
			}
		}
	}
}

// event appends a non-session event durably.
func (s *Server) event(e audit.Event) error {
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	defer cancel()
	_, err := s.cfg.Log.Append(ctx, e)
	if err != nil {
		s.cfg.Logf("proxy: audit log: %s event of %q: %v", e.Type, e.User, err)
	}
	return err
}

// Sessions lists the live sessions.
func (s *Server) Sessions() []SessionInfo {
	now := s.cfg.Now()
	var out []SessionInfo
	for _, x := range s.reg.snapshot() {
		out = append(out, SessionInfo{ID: x.id, User: x.user, Serial: x.serial, Asset: x.asset, Protocol: x.protocol,
			Source: x.source.String(), Rule: x.ruleName(), Monitor: x.monitor.Load(), Started: x.started, Until: x.untilTime(),
			BytesToAsset: x.toAsset.Load(), BytesToClient: x.toClient.Load(),
			Idle: now.Sub(time.Unix(0, x.lastActive.Load()))})
	}
	return out
}
