package proxy

import (
	"fmt"
	"time"

	"github.com/otgate/otgate/audit"
)

// EventSessionHandover is the audit event of a live session that another
// grant took over at the end of its grant's time (Rule: the new grant).
const EventSessionHandover = "session-handover"

// A session is decided once, at its start, by one grant, and its deadline
// was that grant's window end. Shift plants write their access as grants
// one after the other ("day" 06:00-14:00, "late" 14:00-22:00): a session
// then ended at 14:00 although the user was allowed on without a break,
// and the engineering tool's connections dropped at every shift change.
// Now a session runs on across such an edge when the grant that takes
// over at that instant lets it go on exactly as it was opened
// (continues): it allows, the zone's mode is the same, neither grant
// bounds a session's length, and for Modbus its rules decide every
// request alike (modbus.Policy.SameRules). The session's deadline is the
// end of that run (sessionSpan), which the client is told at the start;
// at each edge the proxy decides again, records the handover
// (EventSessionHandover) and moves the session and its inspector to the
// new grant, whose name the records then carry. Anything else at the edge
// (a deny, other Modbus rules, a max_session, monitor against enforce)
// ends the session there, as before.

// continues reports whether a session decided by d may go on under next,
// decided at d's Until: next allows; neither grant bounds a session's
// length (a max_session counts from the session's start, and an edge
// would hide it); the zone's mode is the same; and for modbus the rules
// decide every request alike.
func continues(protocol string, d, next Decision) bool {
	if !next.Allow || d.MaxSession > 0 || next.MaxSession > 0 || d.SessionBound || next.SessionBound || next.Monitor != d.Monitor {
		return false
	}
	return protocol != "modbus" || d.Modbus != nil && d.Modbus.SameRules(next.Modbus)
}

// sessionSpan returns when a session decided by d at req.Time must end
// by the policy: d.Until, carried on across each grant that takes it over
// there (continues), at most maxAccessSteps edges; zero when no end is
// within the policy's horizon.
func sessionSpan(dec Decider, req DecisionRequest, d Decision) time.Time {
	end := d.Until
	for range maxAccessSteps {
		if end.IsZero() || !d.Allow {
			break
		}
		req.Time = end
		next := dec.Decide(req)
		if !continues(req.Protocol, d, next) || !next.Until.IsZero() && !next.Until.After(end) {
			break
		}
		d, end = next, next.Until
	}
	return end
}

// armHandover arms sess's handover at at, the end of its governing
// grant's time, when the session runs on past it; otherwise it disarms it.
func (s *Server) armHandover(sess *session, at, now time.Time) {
	sess.mu.Lock()
	defer sess.mu.Unlock()
	if sess.handover != nil {
		sess.handover.Stop()
		sess.handover = nil
	}
	if sess.done || at.IsZero() || !sess.until.IsZero() && !at.Before(sess.until) {
		return
	}
	sess.handover = time.AfterFunc(at.Sub(now), func() { s.handOver(sess, at) })
}

// handOver decides sess again at at, the end of its grant's time. When
// the grant taking over lets it go on (continues), the handover is
// recorded, the session and its inspector move to that grant and its
// deadline and next handover are set from it; otherwise (the policy
// changed since: a reload re-decides live sessions, so this is the safety
// net) the session ends, failing closed. A handover the audit log cannot
// record ends the session too.
func (s *Server) handOver(sess *session, at time.Time) {
	if _, ended := sess.endedWith(); ended {
		return
	}
	req := sess.request(at)
	dec := s.policy.Load().Decider
	d := dec.Decide(req)
	old := sess.ruleName()
	if d.Rule == old && d.Allow {
		s.armHandover(sess, d.Until, s.cfg.Now()) // the same grant goes on (a window that continues)
		return
	}
	was := Decision{Allow: true, Rule: old, Monitor: sess.monitor, Modbus: sess.modbusRules.Load()}
	if !continues(sess.protocol, was, d) {
		why := d.Reason
		if d.Allow {
			why = fmt.Sprintf("grant %q takes over there, but not as the session was opened (other rules, a session length bound or another zone mode)", d.Rule)
		}
		sess.end(fmt.Sprintf("%s: rule %q allowed it until %s; %s", EndUntil, old, at.Format(time.RFC3339), why))
		return
	}
	if err := s.event(audit.Event{Type: EventSessionHandover, User: sess.user, Source: sess.source.String(), SessionID: sess.id,
		Asset: sess.asset, Protocol: sess.protocol, Rule: d.Rule,
		Reason: fmt.Sprintf("grant %q ended at %s; grant %q takes the session over: %s", old, at.Format(time.RFC3339), d.Rule, d.Reason)}); err != nil {
		sess.end(fmt.Sprintf("%s: rule %q allowed it until %s, and the handover to grant %q could not be recorded: %v", EndUntil, old, at.Format(time.RFC3339), d.Rule, err))
		return
	}
	if d.Modbus != nil {
		sess.modbusRules.Store(d.Modbus)
	}
	span := sessionSpan(dec, req, d)
	until := span
	if until.IsZero() || sess.certEnd.Before(until) {
		until = sess.certEnd
	}
	now := s.cfg.Now()
	sess.mu.Lock()
	sess.rule = d.Rule
	sess.setUntilLocked(until, span, now)
	sess.mu.Unlock()
	s.cfg.Logf("proxy: session %s of %s on %s (%s): grant %q ended at %s, grant %q takes it over", sess.id, sess.user, sess.asset, sess.protocol, old, at.Format(time.RFC3339), d.Rule)
	s.armHandover(sess, d.Until, now)
}
