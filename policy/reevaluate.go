package policy

import (
	"fmt"
	"net/netip"
	"reflect"
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
	// Allowed, its Until and MaxSession bound the session from now on.
	Decision Decision
	// RulesChanged: the session goes on, but under another grant or
	// changed Modbus rules; the proxy must switch the session's inspector
	// to Decision.Modbus.
	RulesChanged bool
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
	changed := old == nil || was.Rule != d.Rule || !sameRules(old, new, d.Rule)
	return Reevaluation{Allowed: true, Decision: d, RulesChanged: changed}
}

// sameRules reports whether the named grant has the same Modbus rules in
// both policies: the same single rules and the same per-unit blocks, in
// the same order (a change in any block, or a move from one form to the
// other, is a change).
func sameRules(old, new *Policy, name string) bool {
	a, b := old.grantByName(name), new.grantByName(name)
	if a == nil || b == nil {
		return false
	}
	return reflect.DeepEqual(a.Modbus, b.Modbus) && reflect.DeepEqual(a.ModbusBlocks, b.ModbusBlocks)
}

func (p *Policy) grantByName(name string) *grant {
	for _, g := range p.grants {
		if g.Name == name {
			return g
		}
	}
	return nil
}
