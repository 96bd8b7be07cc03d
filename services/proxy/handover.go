package proxy

import (
	"fmt"
	"strings"
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
// over at that instant lets it go on (continues): it allows and neither
// grant bounds a session's length. The session's deadline is the end of
// that run (sessionSpan), which the client is told at the start; at each
// edge the proxy decides again, records the handover
// (EventSessionHandover) and moves the session and its inspector to the
// new grant, whose name the records then carry. For Modbus the new
// grant's rules, and its zone's mode, judge every request read from then
// on, also when they differ from the old grant's (a read-write day shift,
// a read-only late one): the connection stays up, as a SCADA master's
// poll or an HMI needs, and a request the new rules refuse gets its
// exception like any other. A request already judged (forwarded, or
// answered with an exception) is not judged again. Anything else at the
// edge (a deny, a max_session) ends the session there, as before.

// continues reports whether a session decided by d may go on under next,
// decided at d's Until: next allows, and neither grant bounds a session's
// length (a max_session counts from the session's start, and an edge
// would hide it). A Modbus session moves to next's rules and zone mode,
// whatever they are (a grant without rules, which the policy does not let
// through, would leave it none: it ends).
func continues(protocol string, d, next Decision) bool {
	if !next.Allow || d.MaxSession > 0 || next.MaxSession > 0 || d.SessionBound || next.SessionBound {
		return false
	}
	return protocol != "modbus" || next.Modbus != nil
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
	was := sess.decision()
	if !continues(sess.protocol, was, d) {
		why := d.Reason
		if d.Allow {
			why = fmt.Sprintf("grant %q takes over there, but cannot carry the session on (a session length bound)", d.Rule)
		}
		sess.end(fmt.Sprintf("%s: rule %q allowed it until %s; %s", EndUntil, old, at.Format(time.RFC3339), why))
		return
	}
	change := judging(sess.protocol, was, d)
	note := noteOf(change)
	if err := s.moveSession(sess, d, EventSessionHandover,
		fmt.Sprintf("grant %q ended at %s; grant %q takes the session over: %s%s", old, at.Format(time.RFC3339), d.Rule, d.Reason, note), change); err != nil {
		sess.end(fmt.Sprintf("%s: rule %q allowed it until %s, and the handover to grant %q could not be recorded: %v", EndUntil, old, at.Format(time.RFC3339), d.Rule, err))
		return
	}
	span := sessionSpan(dec, req, d)
	until := span
	if until.IsZero() || sess.certEnd.Before(until) {
		until = sess.certEnd
	}
	now := s.cfg.Now()
	sess.setUntil(until, span, now)
	s.cfg.Logf("proxy: session %s of %s on %s (%s): grant %q ended at %s, grant %q takes it over%s", sess.id, sess.user, sess.asset, sess.protocol, old, at.Format(time.RFC3339), d.Rule, note)
	s.armHandover(sess, d.Until, now)
}

// EventSessionRules is the audit event of a live Modbus session that a
// policy reload left under the same grant but judged otherwise from then
// on: the grant's rules changed, or its asset's zone went into or out of
// monitor mode (Rule: the grant; Reason: what changed).
const EventSessionRules = "session-rules-changed"

// moveSession records an event of type typ about sess with reason, and
// then moves sess to decision d: its governing rule and, for Modbus, the
// rules and the zone mode its inspector judges the next request by. When
// the event cannot be recorded nothing is moved and the error is
// returned: the caller ends the session (fail closed), as no session runs
// under rules its record does not name. change (judging) says how the
// session's requests are judged otherwise from now on; when it is not
// empty the user's notice streams are told (wire.NoticeRules).
func (s *Server) moveSession(sess *session, d Decision, typ, reason, change string) error {
	if err := s.event(audit.Event{Type: typ, User: sess.user, Source: sess.source.String(), SessionID: sess.id,
		Asset: sess.asset, Protocol: sess.protocol, Rule: d.Rule, Reason: reason}); err != nil {
		return err
	}
	if d.Modbus != nil {
		sess.modbusRules.Store(d.Modbus)
	}
	sess.monitor.Store(d.Monitor)
	sess.mu.Lock()
	defer sess.mu.Unlock()
	sess.rule = d.Rule
	if change != "" {
		sess.noticeRules(change)
	}
	return nil
}

// judging says how a Modbus session moved from was to d is judged
// otherwise from its next request on: other rules, another zone mode
// ("": alike, or not Modbus). Records, log lines and the rules notice
// carry it.
func judging(protocol string, was, d Decision) string {
	if protocol != "modbus" {
		return ""
	}
	var how []string
	if !d.Modbus.SameRules(was.Modbus) {
		how = append(how, fmt.Sprintf("other Modbus rules (grant %q) judge its requests from now on", d.Rule))
	}
	switch {
	case d.Monitor && !was.Monitor:
		how = append(how, "its asset's zone is in monitor mode now: a request the rules deny passes, recorded as would-deny")
	case !d.Monitor && was.Monitor:
		how = append(how, "its asset's zone enforces now: a request the rules deny is refused with its exception")
	}
	return strings.Join(how, "; ")
}

// noteOf is change as a record's or log line's tail ("" for none).
func noteOf(change string) string {
	if change == "" {
		return ""
	}
	return "; " + change
}
