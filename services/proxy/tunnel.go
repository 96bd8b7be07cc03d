package proxy

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/otgate/otgate/audit"
	"github.com/otgate/otgate/services/proxy/wire"
)

// EventSessionRefused is the audit event type of a refused tunnel.
const EventSessionRefused = "session-refused"

func sourceOf(c net.Conn) netip.Addr {
	if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

func rawChain(st tls.ConnectionState) [][]byte {
	chain := make([][]byte, len(st.PeerCertificates))
	for i, c := range st.PeerCertificates {
		chain[i] = c.Raw
	}
	return chain
}

// peer is a session's client connection and how it came in.
type peer struct {
	tc *tls.Conn
	// endpoint is the gate address a Modbus/TCP Security client reached
	// (modbussecurity.go; the session start record's Endpoint); "" for
	// an otgate tunnel.
	endpoint string
}

// framed: an otgate tunnel, whose client reads the gate's wire.Reply
// before the relay. A Modbus/TCP Security client has no such frame: for
// it the gate's answer is the relay itself, or the connection's close.
func (p peer) framed() bool { return p.endpoint == "" }

// via says how the client came in, for the log: "" for a tunnel.
func (p peer) via() string {
	if p.framed() {
		return ""
	}
	return " via Modbus/TCP Security at " + p.endpoint
}

// reply sends r to a framed peer; a Modbus/TCP Security peer gets none.
func (s *Server) reply(p peer, r wire.Reply) error {
	if !p.framed() {
		return nil
	}
	return answer(p.tc, r, s.cfg.HandshakeTimeout)
}

// refuse records the refusal durably, then tells the client (a framed
// one: a Modbus/TCP Security client sees the connection close).
func (s *Server) refuse(p peer, ev audit.Event, rule string) {
	ev.Type = EventSessionRefused
	ev.Rule = rule
	s.event(ev)
	s.cfg.Logf("proxy: refused %s %s/%s from %s%s: %s", ev.User, ev.Asset, ev.Protocol, ev.Source, p.via(), ev.Reason)
	s.reply(p, wire.Reply{Accept: false, Rule: rule, Reason: ev.Reason})
	p.tc.Close()
}

// verifyClient checks the client certificate of a mutual-TLS stream
// (tunnel, notices) with the user CA: issued by it, not expired, not
// revoked, generation current, user enabled. On refusal cred is nil and
// refusal is the reason to record and tell the client; user is the name
// the certificate claims (empty without one).
func (s *Server) verifyClient(st tls.ConnectionState) (cred *Credential, chain [][]byte, user, refusal string) {
	if len(st.PeerCertificates) == 0 {
		return nil, nil, "", "no client certificate (log in first: otgate login)"
	}
	chain = rawChain(st)
	cred, err := s.cfg.CA.Verify(chain)
	if err != nil {
		return nil, nil, st.PeerCertificates[0].Subject.CommonName, "certificate refused: " + err.Error()
	}
	return cred, chain, cred.User, ""
}

func (s *Server) tunnel(tc *tls.Conn) {
	p := peer{tc: tc}
	src := sourceOf(tc)
	ev := audit.Event{Source: src.String()}
	h, err := wire.ReadHeader(tc)
	if err != nil {
		ev.Reason = err.Error()
		s.refuse(p, ev, "")
		return
	}
	s.serveSession(p, h, src, ev)
}

// serveSession admits, records, relays and ends the session a client
// asks for with h (the tunnel's header, or the asset a Modbus/TCP
// Security endpoint stands for).
func (s *Server) serveSession(p peer, h wire.Header, src netip.Addr, ev audit.Event) {
	tc := p.tc
	ev.Asset, ev.Protocol = h.Asset, h.Protocol
	sess, addr, d, ok := s.admit(p, h, src, &ev)
	if !ok {
		return
	}
	// Its timers stop before it leaves the live sessions; a reload that
	// saw it among them arms none again (finish).
	defer s.discard(sess)
	// Until the gate answers, a client that goes away ends the session
	// (and so the asset's dial).
	w := watchClient(tc, sess)
	defer w.stop()

	// No unlogged session: the start record is durable before the asset
	// sees a connection, let alone a byte.
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	_, err := s.cfg.Log.Append(ctx, audit.SessionStart{SessionID: sess.id, User: sess.user, CertSerial: sess.serial,
		Source: src.String(), Asset: sess.asset, Protocol: sess.protocol, Rule: sess.ruleName(), ValidUntil: audit.TimestampOf(sess.untilTime()), Endpoint: p.endpoint})
	cancel()
	if err != nil {
		w.stop()
		s.cfg.Logf("proxy: session %s refused: audit log: %v", sess.id, err)
		s.reply(p, wire.Reply{Accept: false, Rule: d.Rule, Reason: "the gate cannot record the session (audit log unavailable): refused"})
		tc.Close()
		return
	}
	reason, toAsset, toClient := s.runSession(p, w, sess, addr, d)
	sess.noticeEnded(reason)
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	_, err = s.cfg.Log.Append(ctx, audit.SessionEnd{SessionID: sess.id, Reason: reason, BytesToAsset: toAsset, BytesToClient: toClient})
	cancel()
	if err != nil {
		s.cfg.Logf("proxy: session %s end (%s): audit log: %v", sess.id, reason, err)
	}
	s.cfg.Logf("proxy: session %s of %s to %s/%s%s ended: %s (%d bytes to asset, %d to client)", sess.id, sess.user, sess.asset, sess.protocol, p.via(), reason, toAsset, toClient)
}

// maxAdmitAttempts bounds how often a tunnel is decided again because a
// reload or a revocation ran while it was being admitted.
const maxAdmitAttempts = 4

// admit verifies the client's certificate, decides the tunnel and
// registers its session among the live ones, or refuses the tunnel
// (recorded, client told) and returns false. A reload or a revocation
// that ran between the checks and the registration swept the live
// sessions without this one: the tunnel is then checked again, under the
// policy and credentials in force after it.
func (s *Server) admit(p peer, h wire.Header, src netip.Addr, ev *audit.Event) (*session, netip.AddrPort, Decision, bool) {
	tc := p.tc
	for attempt := 1; ; attempt++ {
		epoch := s.admitEpoch.Load()
		cred, chain, user, refusal := s.verifyClient(tc.ConnectionState())
		ev.User = user
		if cred == nil {
			ev.Reason = refusal
			s.refuse(p, *ev, "")
			return nil, netip.AddrPort{}, Decision{}, false
		}
		now := s.cfg.Now()
		pol := s.policy.Load()
		a, ok := pol.asset(h.Asset)
		if !ok {
			ev.Reason = fmt.Sprintf("no such asset %q", h.Asset)
			s.refuse(p, *ev, "")
			return nil, netip.AddrPort{}, Decision{}, false
		}
		var port uint16
		for _, svc := range a.Services {
			if svc.Protocol == h.Protocol {
				port = svc.Port
			}
		}
		if port == 0 {
			ev.Reason = fmt.Sprintf("asset %q does not offer protocol %q", h.Asset, h.Protocol)
			s.refuse(p, *ev, "")
			return nil, netip.AddrPort{}, Decision{}, false
		}
		req := DecisionRequest{User: cred.User, Roles: cred.Roles, Asset: h.Asset, Protocol: h.Protocol, Source: src, Time: now}
		d := pol.Decider.Decide(req)
		if !d.Allow {
			ev.Reason = "denied: " + d.Reason
			s.refuse(p, *ev, d.Rule)
			return nil, netip.AddrPort{}, Decision{}, false
		}
		if h.Protocol == "modbus" && d.Modbus == nil {
			ev.Reason = fmt.Sprintf("rule %q allows modbus but carries no modbus rules: refusing to relay uninspected", d.Rule)
			s.refuse(p, *ev, d.Rule)
			return nil, netip.AddrPort{}, Decision{}, false
		}
		// The policy's end: this grant's, or a later one's that takes the
		// session over without a break (handover.go).
		span := sessionSpan(pol.Decider, req, d)
		until := span
		if until.IsZero() || cred.NotAfter.Before(until) {
			// A session never outlives the certificate that opened it.
			until = cred.NotAfter
		}
		if !until.IsZero() && !now.Before(until) {
			ev.Reason = "denied: decision already expired"
			s.refuse(p, *ev, d.Rule)
			return nil, netip.AddrPort{}, Decision{}, false
		}
		sess := &session{id: newSessionID(), user: cred.User, roles: slices.Clone(cred.Roles), serial: cred.SerialString(),
			asset: h.Asset, protocol: h.Protocol, source: src, rule: d.Rule, started: now, until: until, ruleUntil: span,
			chain: chain, certEnd: cred.NotAfter, ended: make(chan struct{})}
		sess.modbusRules.Store(d.Modbus)
		sess.monitor.Store(d.Monitor)
		if p.framed() {
			// Only an otgate client has a notice stream to follow.
			sess.note.hub = s.notices
		}
		sess.touch(now.UnixNano())
		// The end timer runs from the registration on: a window that ends
		// during the start record or the dial ends the session (and the
		// dial). Every discard below stops it.
		sess.arm(now)
		s.armHandover(sess, d.Until, now)
		ev.SessionID = sess.id
		if err := s.reg.add(sess); err != nil {
			sess.finish()
			ev.Reason = err.Error()
			s.refuse(p, *ev, d.Rule)
			return nil, netip.AddrPort{}, Decision{}, false
		}
		// Shutdown ends the live sessions once it has begun: begun after
		// the registration, it sees this one.
		if why, closing := s.shuttingDown(); closing {
			s.discard(sess)
			ev.SessionID = ""
			ev.Reason = why
			s.refuse(p, *ev, d.Rule)
			return nil, netip.AddrPort{}, Decision{}, false
		}
		// A reload or revocation bumps the epoch before it sweeps the
		// live sessions: unchanged now, any later sweep sees this one.
		if s.admitEpoch.Load() == epoch {
			return sess, netip.AddrPortFrom(a.Address, port), d, true
		}
		// A reload that saw it may have moved its end (setUntil):
		// discard stops the timers.
		s.discard(sess)
		ev.SessionID = ""
		if attempt == maxAdmitAttempts {
			ev.Reason = fmt.Sprintf("the policy or the user's credentials changed %d times while the tunnel was being admitted: try again", attempt)
			s.refuse(p, *ev, d.Rule)
			return nil, netip.AddrPort{}, Decision{}, false
		}
	}
}

// discard stops the timers of a session whose tunnel has returned or
// whose admission is discarded, and takes it out of the live sessions.
func (s *Server) discard(sess *session) {
	sess.finish()
	s.reg.remove(sess)
}

// runSession dials, accepts and relays; it returns the end reason and the
// byte counts.
//
// A session ended after its registration (a revocation, a reload, the
// window's end, its client gone: w) while its start record was written or
// its asset dialled is refused, with the end's reason, before the asset
// is dialled or, when the end came during the dial, at once (the dial is
// abandoned) and before the client is told it is accepted; from the
// accept on, the end closes both connections.
func (s *Server) runSession(p peer, w *clientWatch, sess *session, addr netip.AddrPort, d Decision) (string, uint64, uint64) {
	tc := p.tc
	refuse := func(reason string) (string, uint64, uint64) {
		w.stop()
		s.reply(p, wire.Reply{Accept: false, Rule: sess.ruleName(), Reason: reason, Session: sess.id})
		tc.Close()
		return reason, 0, 0
	}
	if reason, ended := sess.endedWith(); ended {
		return refuse(reason)
	}
	asset, err := s.dialAsset(sess, addr)
	if reason, ended := sess.endedWith(); ended {
		if asset != nil {
			asset.Close()
		}
		return refuse(reason)
	}
	if err != nil {
		return refuse(fmt.Sprintf("asset %s unreachable at %s: %v", sess.asset, addr, err))
	}
	early := w.stop()
	if reason, ended := sess.attach(func() { tc.Close(); asset.Close() }); ended {
		asset.Close()
		return refuse(reason)
	}
	var client io.ReadWriteCloser = tc
	if len(early) > 0 {
		client = &earlyConn{Conn: tc, early: early}
	}
	// A reload may move the session's end (under sess.mu) from its
	// registration on.
	sessUntil := sess.untilTime()
	var until int64
	if !sessUntil.IsZero() {
		until = sessUntil.Unix()
	}
	if err := s.reply(p, wire.Reply{Accept: true, Rule: sess.ruleName(), Reason: d.Reason, Until: until, Session: sess.id}); err != nil {
		asset.Close()
		tc.Close()
		return sess.reason("client gone before accept: " + err.Error()), 0, 0
	}
	tc.SetDeadline(time.Time{})
	sess.accept(s.cfg.Now())
	var natural string
	if sess.protocol == "modbus" {
		natural = s.relayModbus(client, asset, sess, d)
	} else {
		natural = s.relayRaw(client, asset, sess)
	}
	return sess.reason(natural), sess.toAsset.Load(), sess.toClient.Load()
}

var _ io.ReadWriteCloser = (*tls.Conn)(nil)
