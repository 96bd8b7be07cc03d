package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/otgate/otgate/audit"
	"github.com/otgate/otgate/services/proxy/auth"
	"github.com/otgate/otgate/services/proxy/wire"
)

// Audit event types written by the login side.
const (
	EventCertIssued  = "certificate-issued"
	EventLoginNoopen = "login-refused"
	EventLogout      = "logout"
)

// maxLoginRequests bounds the requests on one login connection.
const maxLoginRequests = 16

func (s *Server) login(tc *tls.Conn) {
	defer tc.Close()
	src := sourceOf(tc)
	for i := 0; i < maxLoginRequests; i++ {
		tc.SetDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
		var req wire.Request
		if err := wire.ReadFrame(tc, &req); err != nil {
			if !errors.Is(err, io.EOF) {
				s.cfg.Logf("proxy: login connection from %s: %v", src, err)
				answer(tc, wire.Response{Code: wire.CodeBadRequest, Error: err.Error()}, s.cfg.HandshakeTimeout)
			}
			return
		}
		var rsp wire.Response
		switch req.Op {
		case wire.OpLogin:
			rsp = s.doLogin(&req, src)
		case wire.OpAssets:
			rsp = s.doAssets(tc, src)
		case wire.OpLogout:
			rsp = s.doLogout(tc, src)
		default:
			rsp = wire.Response{Code: wire.CodeBadRequest, Error: fmt.Sprintf("unknown operation %q (want %s, %s or %s)", req.Op, wire.OpLogin, wire.OpAssets, wire.OpLogout)}
		}
		if err := answer(tc, rsp, s.cfg.HandshakeTimeout); err != nil {
			return
		}
	}
}

func (s *Server) doLogin(req *wire.Request, src netip.Addr) wire.Response {
	pub, err := x509.ParsePKIXPublicKey(req.PublicKey)
	if err != nil {
		return wire.Response{Code: wire.CodeBadRequest, Error: fmt.Sprintf("public key: not a PKIX DER public key: %v", err)}
	}
	login, err := s.cfg.Users.Authenticate(req.User, []byte(req.Password), req.Code, src)
	if err != nil {
		var ref *auth.Refusal
		if errors.As(err, &ref) {
			// The exact reason is in the audit log; the console names it
			// too (at most 20 a minute), where the person asked "why can
			// I not log in" looks first. The client is told less.
			if ok, suffix := s.loginFails.allow(); ok {
				s.cfg.Logf("proxy: %v%s", ref, suffix)
			}
			return wire.Response{Code: wire.CodeRefused, Error: ref.ClientMessage()}
		}
		s.cfg.Logf("proxy: login of %q from %s: %v", req.User, src, err)
		return wire.Response{Code: wire.CodeInternal, Error: "the gate could not check the login; try again later"}
	}
	now := s.cfg.Now()
	// Never past the end of the user's current time window (accessEnd).
	notAfter, any := s.accessEnd(login.User, login.Roles, src, now, now.Add(s.cfg.MaxCertValidity))
	if !any {
		s.event(audit.Event{Type: EventLoginNoopen, User: login.User, Source: src.String(), Reason: "no grant allows this user any asset now"})
		return wire.Response{Code: wire.CodeRefused, Error: "login correct, but no grant allows you any asset now"}
	}
	chain, err := s.cfg.CA.Issue(login, pub, notAfter)
	if err != nil {
		s.cfg.Logf("proxy: issue certificate for %q: %v", login.User, err)
		return wire.Response{Code: wire.CodeInternal, Error: "the gate could not issue a certificate: " + err.Error()}
	}
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		return wire.Response{Code: wire.CodeInternal, Error: "issued certificate does not parse: " + err.Error()}
	}
	if err := s.event(audit.Event{Type: EventCertIssued, User: login.User, Source: src.String(),
		Reason: fmt.Sprintf("serial %s valid until %s", leaf.SerialNumber.Text(16), leaf.NotAfter.UTC().Format(time.RFC3339))}); err != nil {
		return wire.Response{Code: wire.CodeInternal, Error: "the gate cannot record the login (audit log unavailable)"}
	}
	return wire.Response{Certificate: chain, NotAfter: leaf.NotAfter.Unix(), User: login.User}
}

// verifyPeer checks the client certificate of a login connection.
func (s *Server) verifyPeer(tc *tls.Conn) (*Credential, *wire.Response) {
	st := tc.ConnectionState()
	if len(st.PeerCertificates) == 0 {
		return nil, &wire.Response{Code: wire.CodeAuth, Error: "no client certificate: log in first (otgate login)"}
	}
	cred, err := s.cfg.CA.Verify(rawChain(st))
	if err != nil {
		return nil, &wire.Response{Code: wire.CodeAuth, Error: "certificate refused: " + err.Error()}
	}
	return cred, nil
}

// maxAccessSteps bounds accessEnd's walk from one window to the next.
const maxAccessSteps = 64

// accessEnd is when the user's access from src, as of now, ends, at most
// limit; any is false when no grant allows the user anything now. Access
// runs to the latest end among the decisions that allow the user
// something; when another decision allows something from that moment on
// (a grant whose window starts where another's ends, or the next window
// of the same grant), access goes on to its end, and so on: the user's
// time window is what they may do without a break, not one grant's, so
// one MFA covers a working day that two grants split. A gap, however
// short, ends it there, and so does a latest end that is a grant's
// longest session (max_session) rather than its window's end, as before:
// the credential lasts no longer than a session started now could.
// After maxAccessSteps such steps it ends where it got to.
func (s *Server) accessEnd(user string, roles []string, src netip.Addr, now, limit time.Time) (end time.Time, any bool) {
	at := now
	for step := 0; step < maxAccessSteps; step++ {
		allowed := s.allowedAssets(user, roles, src, at)
		if len(allowed) == 0 {
			return at, step > 0
		}
		var latest time.Time
		bound := false
		for _, a := range allowed {
			if a.until.IsZero() {
				return limit, true // no end within the policy's horizon
			}
			if a.until.After(latest) {
				latest, bound = a.until, a.sessionBound
			} else if a.until.Equal(latest) && !a.sessionBound {
				bound = false // a window ends there too
			}
		}
		if !latest.Before(limit) {
			return limit, true
		}
		if bound || !latest.After(at) {
			return latest, true
		}
		at = latest
	}
	return at, true
}

type allowedAsset struct {
	name, protocol, rule string
	until                time.Time
	sessionBound         bool // until is the grant's max session from then
}

func (s *Server) allowedAssets(user string, roles []string, src netip.Addr, now time.Time) []allowedAsset {
	pol := s.policy.Load()
	var out []allowedAsset
	for _, a := range pol.Site.Assets {
		for _, svc := range a.Services {
			req := DecisionRequest{User: user, Roles: roles, Asset: a.Name, Protocol: svc.Protocol, Source: src, Time: now}
			d := pol.Decider.Decide(req)
			if d.Allow {
				// Until when a session opened now may run: across grants
				// that take it over without a break (handover.go).
				out = append(out, allowedAsset{a.Name, svc.Protocol, d.Rule, sessionSpan(pol.Decider, req, d), d.SessionBound})
			}
		}
	}
	return out
}

func (s *Server) doAssets(tc *tls.Conn, src netip.Addr) wire.Response {
	cred, bad := s.verifyPeer(tc)
	if bad != nil {
		return *bad
	}
	rsp := wire.Response{User: cred.User, NotAfter: cred.NotAfter.Unix()}
	for _, a := range s.allowedAssets(cred.User, cred.Roles, src, s.cfg.Now()) {
		until := a.until
		if until.IsZero() || cred.NotAfter.Before(until) {
			until = cred.NotAfter
		}
		rsp.Assets = append(rsp.Assets, wire.Asset{Name: a.name, Protocol: a.protocol, Rule: a.rule, Until: until.Unix(),
			Endpoint: s.modbusEndpoint(a.name, a.protocol)})
	}
	return rsp
}

// modbusEndpoint is asset's Modbus/TCP Security endpoint for a modbus
// entry, "" when the gate serves none or the asset has no overlay
// address (yet); a table that cannot be read shows none (and the
// listener refuses connections until it can).
func (s *Server) modbusEndpoint(asset, protocol string) string {
	m := s.mbs.Load()
	if m == nil || protocol != "modbus" {
		return ""
	}
	addr, ok, err := m.eps.Endpoint(asset)
	if err != nil {
		s.cfg.Logf("proxy: assets: overlay endpoint of %s: %v", asset, err)
		return ""
	}
	if !ok {
		return ""
	}
	return netip.AddrPortFrom(addr, m.port).String()
}

func (s *Server) doLogout(tc *tls.Conn, src netip.Addr) wire.Response {
	cred, bad := s.verifyPeer(tc)
	if bad != nil {
		return *bad
	}
	if _, err := s.cfg.Users.Revoke(cred.User, "logout from "+src.String()); err != nil {
		return wire.Response{Code: wire.CodeInternal, Error: "logout: " + err.Error()}
	}
	s.event(audit.Event{Type: EventLogout, User: cred.User, Source: src.String(), Reason: "credential generation bumped"})
	s.RecheckUser(cred.User)
	return wire.Response{User: cred.User}
}
