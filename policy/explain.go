package policy

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/otgate/otgate/site"
)

// Reach is one user who can reach an asset over one protocol now.
type Reach struct {
	User     string
	Asset    string
	Protocol string
	Rule     string
	Until    time.Time
	Reason   string
	// SourceNetworks, when set, are the only networks the user may come
	// from (WhoCanReach does not know the source).
	SourceNetworks []netip.Prefix
}

// WhoCanReach lists, for the asset at t, every user and protocol an
// allow decision holds for, sorted by user then protocol.
func (p *Policy) WhoCanReach(asset string, t time.Time) ([]Reach, error) {
	a := p.assets[asset]
	if a == nil {
		return nil, fmt.Errorf("policy: no asset %q in site %q (known: %s)", asset, p.siteName, p.assetNames())
	}
	var out []Reach
	for _, name := range p.userNames {
		u := p.users[name]
		for _, svc := range a.Services {
			d := p.decide(Request{User: name, Asset: asset, Protocol: svc.Protocol, Time: t}, false)
			if d.Allow {
				out = append(out, Reach{User: name, Asset: asset, Protocol: svc.Protocol, Rule: d.Rule, Until: d.Until, Reason: d.Reason, SourceNetworks: u.SourceNetworks})
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].User != out[j].User {
			return out[i].User < out[j].User
		}
		return out[i].Protocol < out[j].Protocol
	})
	return out, nil
}

func (p *Policy) assetNames() string {
	var names []string
	for n := range p.assets {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// Explanation answers "may this user reach this asset now, and why".
type Explanation struct {
	User  string
	Asset string
	At    time.Time
	// Decisions has one decision per protocol the asset serves (source
	// networks not checked: an allow holds only from SourceNetworks).
	Decisions []ProtocolDecision
	// SourceNetworks, when set, are the only networks the user may come
	// from: from anywhere else Decide denies (source-network).
	SourceNetworks []netip.Prefix `json:",omitempty"`
	// Grants are every grant, with whether and why it applies.
	Grants []GrantCheck
}

// ProtocolDecision is the decision for one protocol.
type ProtocolDecision struct {
	Protocol string
	Decision Decision
	// Modbus renders the allowing grant's Modbus rules, a line per block
	// (modbus.Policy.Describe): what the session may do on which unit.
	Modbus []string `json:",omitempty"`
}

// GrantCheck says why one grant applies to a user and asset at a time, or
// why not.
type GrantCheck struct {
	Grant  string
	Effect site.Effect
	// Matches: the grant names the user (or a role of theirs), the asset
	// (or its zone) and a protocol the asset serves.
	Matches bool
	// Active: Matches and the grant's schedule contains the time.
	Active bool
	// Why says which part matched or failed.
	Why string
	// Change is when Active next flips (zero: not within Horizon).
	Change time.Time
}

// Explain returns the decisions for user on asset at t and the reasoning
// over every grant.
func (p *Policy) Explain(userName, asset string, t time.Time) (*Explanation, error) {
	u := p.users[userName]
	if u == nil {
		var names []string
		names = append(names, p.userNames...)
		sort.Strings(names)
		return nil, fmt.Errorf("policy: no user %q in site %q (known: %s)", userName, p.siteName, strings.Join(names, ", "))
	}
	a := p.assets[asset]
	if a == nil {
		return nil, fmt.Errorf("policy: no asset %q in site %q (known: %s)", asset, p.siteName, p.assetNames())
	}
	e := &Explanation{User: userName, Asset: asset, At: t, SourceNetworks: u.SourceNetworks}
	for _, svc := range a.Services {
		pd := ProtocolDecision{Protocol: svc.Protocol, Decision: p.decide(Request{User: userName, Asset: asset, Protocol: svc.Protocol, Time: t}, false)}
		if pd.Decision.Allow && pd.Decision.Modbus != nil {
			pd.Modbus = pd.Decision.Modbus.Describe()
		}
		e.Decisions = append(e.Decisions, pd)
	}
	for _, g := range p.grants {
		e.Grants = append(e.Grants, g.check(u, a, t))
	}
	return e, nil
}

func (g *grant) check(u *user, a *site.Asset, t time.Time) GrantCheck {
	c := GrantCheck{Grant: g.Name, Effect: g.Effect}
	ok, who := g.subjectMatch(u)
	if !ok {
		c.Why = fmt.Sprintf("subjects: %s is not named and has none of its roles (%s)", u.Name, subjectList(g))
		return c
	}
	ok, what := g.targetMatch(a)
	if !ok {
		c.Why = fmt.Sprintf("targets: %s (zone %s) is not among %s", a.Name, a.Zone, targetList(g))
		return c
	}
	var protos []string
	for _, svc := range a.Services {
		if g.coversProtocol(svc.Protocol) {
			protos = append(protos, svc.Protocol)
		}
	}
	if len(protos) == 0 {
		c.Why = fmt.Sprintf("protocols: the grant covers %s; %s serves %s", strings.Join(g.Protocols, ", "), a.Name, servicesOf(a))
		return c
	}
	c.Matches = true
	var change time.Time
	c.Active, change = g.stateAt(a, t)
	c.Change = change
	head := fmt.Sprintf("%s, %s, %s", who, what, strings.Join(protos, ", "))
	switch {
	case c.Active && change.IsZero():
		c.Why = fmt.Sprintf("%s; applies now (%s), no end within %d days", head, g.windows, int(Horizon.Hours()/24))
	case c.Active:
		c.Why = fmt.Sprintf("%s; applies now (%s) until %s", head, g.windows, change.In(g.loc).Format(time.RFC3339))
	case change.IsZero():
		c.Why = fmt.Sprintf("%s; but not now (%s), and not within %d days", head, g.windows, int(Horizon.Hours()/24))
	default:
		c.Why = fmt.Sprintf("%s; but not now (%s), next from %s", head, g.windows, change.In(g.loc).Format(time.RFC3339))
	}
	return c
}

// stateAt reports whether g's schedule for a contains t, and when that
// next changes.
func (g *grant) stateAt(a *site.Asset, t time.Time) (bool, time.Time) {
	span := 8 * 24 * time.Hour
	for {
		end := t.Add(span)
		s := g.schedule(a, t, end)
		active := s.contains(t)
		for _, iv := range s {
			for _, e := range []time.Time{iv.start, iv.end} {
				if e.After(t) && e.Before(end) {
					return active, e
				}
			}
		}
		if span >= Horizon {
			return active, time.Time{}
		}
		span = min(span*4, Horizon)
	}
}

func subjectList(g *grant) string {
	var parts []string
	if len(g.Users) > 0 {
		parts = append(parts, "users "+strings.Join(g.Users, ", "))
	}
	if len(g.Roles) > 0 {
		parts = append(parts, "roles "+strings.Join(g.Roles, ", "))
	}
	return strings.Join(parts, "; ")
}

func targetList(g *grant) string {
	var parts []string
	if len(g.Assets) > 0 {
		parts = append(parts, "assets "+strings.Join(g.Assets, ", "))
	}
	if len(g.Zones) > 0 {
		parts = append(parts, "zones "+strings.Join(g.Zones, ", "))
	}
	return strings.Join(parts, "; ")
}
