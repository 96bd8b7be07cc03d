package policy

import (
	"fmt"
	"net/netip"
	"time"
)

// Session is a live session as the proxy knows it.
type Session struct {
	User     string
	Asset    string
	Protocol string
	Source   netip.Addr
	Start    time.Time
}

// Reevaluation is what a reload means for one live session.
type Reevaluation struct {
	// Allowed: the session may go on under the new policy.
	Allowed bool
	// Reason says why not (empty when Allowed).
	Reason string
	// Decision is the new policy's decision at the reload time; when
	// Allowed, its Until and MaxSession bound the session from now on,
	// and its Rule and Modbus rules govern it (the proxy moves a live
	// session whose rules differ to them: modbus.Policy.SameRules).
	Decision Decision
}

// Reevaluate decides whether a live session may continue after a reload
// from old to new at now. old may be nil (first policy).
func Reevaluate(old, new *Policy, s Session, now time.Time) Reevaluation {
	req := Request{User: s.User, Asset: s.Asset, Protocol: s.Protocol, Source: s.Source, Time: now}
	d := new.Decide(req)
	var was Decision
	if old != nil {
		was = old.Decide(req)
	}
	if !d.Allow {
		reason := "policy reload: " + d.Reason
		if was.Allow {
			reason = fmt.Sprintf("policy reload: no longer allowed (was allowed by grant %q): %s", was.Rule, d.Reason)
		}
		return Reevaluation{Reason: reason, Decision: d}
	}
	if d.MaxSession > 0 && !now.Before(s.Start.Add(d.MaxSession)) {
		return Reevaluation{Reason: fmt.Sprintf("policy reload: the session started %s ago, longer than grant %q allows (max_session %s)",
			now.Sub(s.Start).Round(time.Second), d.Rule, d.MaxSession), Decision: d}
	}
	return Reevaluation{Allowed: true, Decision: d}
}
