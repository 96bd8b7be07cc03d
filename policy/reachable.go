package policy

import (
	"net/netip"
	"sort"
	"time"
)

// Reachable lists every asset and protocol user may reach at t from src
// (what `otgate assets` shows), sorted by asset then protocol. Reach.User
// is the user; Reach.Asset names the asset.
func (p *Policy) Reachable(user string, src netip.Addr, t time.Time) []Reach {
	var out []Reach
	for name, a := range p.assets {
		for _, svc := range a.Services {
			d := p.Decide(Request{User: user, Asset: name, Protocol: svc.Protocol, Source: src, Time: t})
			if d.Allow {
				out = append(out, Reach{User: user, Asset: name, Protocol: svc.Protocol, Rule: d.Rule, Until: d.Until, Reason: d.Reason})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Asset != out[j].Asset {
			return out[i].Asset < out[j].Asset
		}
		return out[i].Protocol < out[j].Protocol
	})
	return out
}

// AccessUntil is the latest Until of everything Reachable: when the
// decisions that allow the user something now end. It does not follow a
// window that starts where one of them ends (the proxy's login bound does:
// services/proxy accessEnd). ok is false when the user may reach nothing
// now; a zero time with ok means some access has no scheduled end within
// Horizon.
func (p *Policy) AccessUntil(user string, src netip.Addr, t time.Time) (until time.Time, ok bool) {
	for _, r := range p.Reachable(user, src, t) {
		if r.Until.IsZero() {
			return time.Time{}, true
		}
		if r.Until.After(until) {
			until = r.Until
		}
		ok = true
	}
	return until, ok
}
