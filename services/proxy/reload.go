package proxy

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/otgate/otgate/audit"
	"github.com/otgate/otgate/policy"
	"github.com/otgate/otgate/site"
)

// ErrReload wraps a reload that kept the old policy.
var ErrReload = errors.New("reload failed: the old policy stays in force")

// Reloaded is what a reload did to the live sessions.
type Reloaded struct {
	// Ended: the sessions ended (no longer allowed, their asset moved).
	Ended int
	// Moved: the sessions moved, their connections up, to other Modbus
	// rules, another zone mode or another grant.
	Moved int
}

func (r Reloaded) String() string {
	return fmt.Sprintf("%d sessions ended, %d moved to new rules, zone mode or grant", r.Ended, r.Moved)
}

// Reload loads the policy again. On error the old policy stays and
// the error (naming file:line:field) is returned. On success every live
// session is decided again under the new policy: those no longer allowed
// are ended with the reason, those allowed under other rules, another
// zone mode or another grant are moved (reloadSession).
func (s *Server) Reload() (Reloaded, error) {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	p, err := s.cfg.LoadPolicy()
	if err == nil {
		err = checkPolicy(p)
	}
	if err != nil {
		s.event(audit.Event{Type: "policy-reload-failed", Reason: err.Error()})
		return Reloaded{}, fmt.Errorf("%w: %w", ErrReload, err)
	}
	old := s.policy.Swap(p)
	s.admitEpoch.Add(1)
	s.event(audit.Event{Type: "policy-reloaded", Reason: p.Source})
	now := s.cfg.Now()
	var r Reloaded
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
			} else if how := assetMoved(old, a, sess.protocol); how != "" {
				// The session's connection goes where the asset was.
				why = fmt.Sprintf("asset %q moved (%s): reconnect", sess.asset, how)
			} else {
				var moved bool
				why, moved = s.reloadSession(old, p, sess, now)
				if moved {
					r.Moved++
				}
			}
		}
		if why != "" {
			sess.end(EndPolicy + ": " + why)
			r.Ended++
		}
	}
	return r, nil
}

// assetMoved describes how asset a moved from where the policy before a
// reload (old) had it: its zone, its underlay address or protocol's port
// ("": none of them, or no old policy to tell).
func assetMoved(old *Policy, a site.Asset, protocol string) string {
	if old == nil {
		return ""
	}
	was, ok := old.asset(a.Name)
	if !ok {
		return ""
	}
	var how []string
	if was.Zone != a.Zone {
		how = append(how, fmt.Sprintf("zone %q -> %q", was.Zone, a.Zone))
	}
	if was.Address != a.Address {
		how = append(how, fmt.Sprintf("address %s -> %s", was.Address, a.Address))
	}
	if p, q := servicePort(was, protocol), servicePort(a, protocol); p != q {
		how = append(how, fmt.Sprintf("%s port %d -> %d", protocol, p, q))
	}
	return strings.Join(how, ", ")
}

func servicePort(a site.Asset, protocol string) uint16 {
	for _, svc := range a.Services {
		if svc.Protocol == protocol {
			return svc.Port
		}
	}
	return 0
}

// reloadSession decides sess again under the reloaded policy p (old: the
// one before) and returns why it must end ("": it goes on) and whether it
// moved to other rules, another zone mode or another grant. It goes on
// when p still allows it and it can run on as it runs: under the same
// grant, or under another that can take it over as at a shift change
// (continues: no session length bound); the move is recorded (a handover,
// or the grant's new Modbus rules or zone mode) before it is made, and a
// move the log cannot record ends the session. A Modbus session's
// inspector judges every request read after the move by the new rules, in
// the zone's new mode (a zone taken from monitor mode to enforce at the
// end of commissioning); the connection stays up (a SCADA master's poll,
// an HMI). Its
// deadline then follows p (sessionSpan), with a max_session counted from
// the session's start.
func (s *Server) reloadSession(old, p *Policy, sess *session, now time.Time) (why string, moved bool) {
	d := p.Decider.Decide(sess.request(now))
	if !d.Allow {
		return "no longer allowed: " + d.Reason, false
	}
	was := sess.decision()
	change := judging(sess.protocol, was, d)
	note := noteOf(change)
	var deadline *time.Time
	if d.Rule != was.Rule {
		if !continues(sess.protocol, was, d) {
			// Another grant governs it now, and cannot carry it on as it
			// runs: fail closed, the client reconnects under it.
			return fmt.Sprintf("now governed by rule %q instead of %q: reconnect", d.Rule, was.Rule), false
		}
		if err := s.moveSession(sess, d, EventSessionHandover,
			fmt.Sprintf("policy reload: grant %q decides the session now instead of %q: %s%s", d.Rule, was.Rule, d.Reason, note), change); err != nil {
			return fmt.Sprintf("now governed by rule %q instead of %q, and the move could not be recorded: %v", d.Rule, was.Rule, err), false
		}
		moved = true
		s.cfg.Logf("proxy: session %s of %s on %s (%s): policy reload: grant %q takes it over from %q%s", sess.id, sess.user, sess.asset, sess.protocol, d.Rule, was.Rule, note)
	} else {
		end, why, dl := reevaluate(old, p, sess, now)
		if end {
			return why, false
		}
		deadline = dl
		if change != "" {
			if err := s.moveSession(sess, d, EventSessionRules, "policy reload: "+change, change); err != nil {
				return fmt.Sprintf("%s, and the change could not be recorded: %v", change, err), false
			}
			moved = true
			s.cfg.Logf("proxy: session %s of %s on %s: policy reload: %s", sess.id, sess.user, sess.asset, change)
		}
	}
	if deadline != nil {
		d.Until = *deadline
	}
	// The policy's end, carried on across grants that take the session
	// over (handover.go).
	span := sessionSpan(p.Decider, sess.request(now), d)
	until := span
	if until.IsZero() || sess.certEnd.Before(until) {
		until = sess.certEnd
	}
	if !until.Equal(sess.untilTime()) || d.Rule != was.Rule {
		// (A deadline notice also tells the client of the new grant.)
		sess.setUntil(until, span, now)
	}
	s.armHandover(sess, d.Until, now)
	return "", moved
}

// reevaluate asks the policy package about a live session when both
// policies are compiled site files: whether it is still allowed (a reload
// in the middle of a session) and, as the grant's max session counts from
// the session's start, not from the reload, until when.
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
	dl := r.Decision.SessionDeadline(sess.started)
	return false, "", &dl
}
