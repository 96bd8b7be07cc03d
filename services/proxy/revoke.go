package proxy

import (
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/otgate/otgate/audit"
	"github.com/otgate/otgate/policy"
)

// RecheckUser re-verifies the certificate of every live session of user
// and ends those that no longer pass (revoked serial, bumped generation,
// disabled or removed user). Wire it to the user store's OnRevoke.
//
// The sessions end, and their ends are announced on the user's notice
// streams (with the reason the audit log records), before the streams
// that no longer pass are closed: a stream closed first would drop the
// announcements, and the client could not say which session ended.
func (s *Server) RecheckUser(user string) int {
	s.admitEpoch.Add(1)
	n := 0
	for _, sess := range s.reg.snapshot() {
		if sess.user != user {
			continue
		}
		if _, err := s.cfg.CA.Verify(sess.chain); err != nil {
			s.cfg.Logf("proxy: ending session %s of %s: %v", sess.id, user, err)
			sess.end(EndRevoked + ": " + err.Error())
			sess.noticeEnded(sess.reason(""))
			n++
		}
	}
	s.notices.recheck(user, func(chain [][]byte) error { _, err := s.cfg.CA.Verify(chain); return err })
	return n
}

// RevokeUser bumps the user's credential generation and ends the user's
// live sessions; it returns how many ended.
func (s *Server) RevokeUser(user, why string) (int, error) {
	live := s.userSessions(user)
	if _, err := s.cfg.Users.Revoke(user, why); err != nil {
		return 0, fmt.Errorf("revoke %q: %w", user, err)
	}
	s.event(audit.Event{Type: "admin-revoke", User: user, Reason: why})
	s.RecheckUser(user)
	return countEnded(live), nil
}

// RevokeSerial revokes one certificate (hex serial) of user and ends the
// sessions opened with it.
func (s *Server) RevokeSerial(user, serialHex, why string) (int, error) {
	serial, ok := new(big.Int).SetString(serialHex, 16)
	if !ok || serial.Sign() <= 0 {
		return 0, fmt.Errorf("revoke: serial %q is not a positive hex number", serialHex)
	}
	// The serial's certificate can live at most MaxCertValidity from now.
	notAfter := s.cfg.Now().Add(s.cfg.MaxCertValidity + time.Minute)
	for _, sess := range s.reg.snapshot() {
		if sess.user == user && sess.serial == serial.Text(16) && !sess.certEnd.IsZero() {
			notAfter = sess.certEnd.Add(time.Minute)
		}
	}
	live := s.userSessions(user)
	if err := s.cfg.Users.RevokeCertificate(user, serial, notAfter, why); err != nil {
		return 0, fmt.Errorf("revoke serial %s of %q: %w", serialHex, user, err)
	}
	s.event(audit.Event{Type: "admin-revoke-serial", User: user, Reason: "serial " + serial.Text(16) + ": " + why})
	s.RecheckUser(user)
	return countEnded(live), nil
}

// Unlock lifts a login lockout.
func (s *Server) Unlock(user string) error {
	if err := s.cfg.Users.Unlock(user); err != nil {
		return fmt.Errorf("unlock %q: %w", user, err)
	}
	return nil
}

// ErrReload wraps a reload that kept the old policy.
var ErrReload = errors.New("reload failed: the old policy stays in force")

// Reload loads the policy again. On error the old policy stays and the
// error (naming file:line:field) is returned. On success every live
// session is decided again under the new policy and those no longer
// allowed are ended with the reason; it returns how many ended.
func (s *Server) Reload() (int, error) {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	p, err := s.cfg.LoadPolicy()
	if err == nil {
		err = checkPolicy(p)
	}
	if err != nil {
		s.event(audit.Event{Type: "policy-reload-failed", Reason: err.Error()})
		return 0, fmt.Errorf("%w: %w", ErrReload, err)
	}
	old := s.policy.Swap(p)
	s.admitEpoch.Add(1)
	s.event(audit.Event{Type: "policy-reloaded", Reason: p.Source})
	now := s.cfg.Now()
	n := 0
	for _, sess := range s.reg.snapshot() {
		why := ""
		a, ok := p.asset(sess.asset)
		if !ok {
			why = fmt.Sprintf("asset %q no longer in the site file", sess.asset)
		} else {
			offered := false
			for _, svc := range a.Services {
				offered = offered || svc.Protocol == sess.protocol
			}
			if !offered {
				why = fmt.Sprintf("asset %q no longer offers %s", sess.asset, sess.protocol)
			} else if d := p.Decider.Decide(sess.request(now)); !d.Allow {
				why = "no longer allowed: " + d.Reason
			} else if rule := sess.ruleName(); d.Rule != rule {
				// Another grant (maybe with other protocol rules) governs
				// it now: fail closed, the client reconnects under it.
				why = fmt.Sprintf("now governed by rule %q instead of %q: reconnect", d.Rule, rule)
			} else if changed, how, deadline := reevaluate(old, p, sess, now); changed {
				why = how
			} else if sess.monitor && !d.Monitor {
				// Its inspector would go on passing what enforce mode
				// denies: fail closed, the client reconnects under enforce.
				why = fmt.Sprintf("the zone of asset %q now enforces (the session was opened in monitor mode): reconnect", sess.asset)
			} else {
				if deadline != nil {
					d.Until = *deadline
				}
				// The policy's end, carried on across grants that take
				// the session over (handover.go).
				span := sessionSpan(p.Decider, sess.request(now), d)
				until := span
				if until.IsZero() || sess.certEnd.Before(until) {
					until = sess.certEnd
				}
				if !until.Equal(sess.untilTime()) {
					sess.setUntil(until, span, now)
				}
				s.armHandover(sess, d.Until, now)
			}
		}
		if why != "" {
			sess.end(EndPolicy + ": " + why)
			n++
		}
	}
	return n, nil
}

func (s *Server) userSessions(user string) []*session {
	var out []*session
	for _, x := range s.reg.snapshot() {
		if x.user == user {
			out = append(out, x)
		}
	}
	return out
}

// countEnded counts the sessions of ss that have been ended (by anyone:
// the store's OnRevoke hook may have been first).
func countEnded(ss []*session) int {
	n := 0
	for _, x := range ss {
		select {
		case <-x.ended:
			n++
		default:
		}
	}
	return n
}

// reevaluate asks the policy package about a live session when both
// policies are compiled site files: a Modbus session whose rules changed
// under the same grant ends (fail closed: the client reconnects and is
// told the new rules' decision; requests already judged, or pipelined
// behind them, are not judged again), and the session's deadline counts
// the grant's max session from the session's start, not from the reload.
// (At a shift change the inspector is moved to rules that decide alike,
// handover.go; rules that differ end the session there too.)
func reevaluate(old, new *Policy, sess *session, now time.Time) (end bool, why string, deadline *time.Time) {
	if old == nil {
		return false, "", nil
	}
	o, ok1 := old.Decider.(PolicyDecider)
	n, ok2 := new.Decider.(PolicyDecider)
	if !ok1 || !ok2 {
		return false, "", nil
	}
	r := policy.Reevaluate(o.P, n.P, policy.Session{User: sess.user, Asset: sess.asset, Protocol: sess.protocol, Source: sess.source, Start: sess.started}, now)
	if !r.Allowed {
		return true, r.Reason, nil
	}
	if sess.protocol == "modbus" && r.RulesChanged {
		return true, fmt.Sprintf("modbus rules of grant %q changed: reconnect under the new rules", r.Decision.Rule), nil
	}
	dl := r.Decision.SessionDeadline(sess.started)
	return false, "", &dl
}
