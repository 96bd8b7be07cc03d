package policy

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/otgate/otgate/site"
)

// Decide answers one request (see the package doc for the rules).
func (p *Policy) Decide(r Request) Decision { return p.decide(r, true) }

func deny(rule, format string, args ...any) Decision {
	return Decision{Rule: rule, Reason: fmt.Sprintf(format, args...)}
}

func (p *Policy) decide(r Request, checkSource bool) Decision {
	if r.Time.IsZero() {
		return deny(RuleNoTime, "the request carries no time; nothing can be decided")
	}
	u := p.users[r.User]
	if u == nil {
		return deny(RuleUnknownUser, "no user %q in site %q", r.User, p.siteName)
	}
	if u.Disabled {
		return deny(RuleUserDisabled, "user %q is disabled in the site file", u.Name)
	}
	if checkSource && len(u.SourceNetworks) > 0 && !inNetworks(u.SourceNetworks, r.Source) {
		return deny(RuleSourceNetwork, "user %q may connect only from %s, not from %s", u.Name, prefixList(u.SourceNetworks), addrString(r))
	}
	a := p.assets[r.Asset]
	if a == nil {
		return deny(RuleUnknownAsset, "no asset %q in site %q", r.Asset, p.siteName)
	}
	if !serves(a, r.Protocol) {
		return deny(RuleProtocolNotServed, "asset %q does not serve %q (it serves %s)", a.Name, r.Protocol, servicesOf(a))
	}
	cands := p.candidates(u, a, r.Protocol)
	chosen, until := evaluate(cands, u, a, r.Time)
	return p.decision(cands, chosen, u, a, r.Protocol, r.Time, until)
}

func inNetworks(nets []netip.Prefix, addr netip.Addr) bool {
	if !addr.IsValid() {
		return false
	}
	addr = addr.Unmap()
	for _, n := range nets {
		if n.Contains(addr) {
			return true
		}
	}
	return false
}

func addrString(r Request) string {
	if !r.Source.IsValid() {
		return "an unknown address"
	}
	return r.Source.Unmap().String()
}

func prefixList(nets []netip.Prefix) string {
	s := make([]string, len(nets))
	for i, n := range nets {
		s[i] = n.String()
	}
	return strings.Join(s, ", ")
}

func serves(a *site.Asset, proto string) bool {
	for _, s := range a.Services {
		if s.Protocol == proto {
			return true
		}
	}
	return false
}

func servicesOf(a *site.Asset) string {
	var s []string
	for _, svc := range a.Services {
		s = append(s, fmt.Sprintf("%s/%d", svc.Protocol, svc.Port))
	}
	return strings.Join(s, ", ")
}

// candidates are the grants that apply to the user, asset and protocol at
// some time, in file order.
func (p *Policy) candidates(u *user, a *site.Asset, proto string) []*grant {
	var out []*grant
	for _, g := range p.byAsset[a.Name] {
		if ok, _ := g.subjectMatch(u); ok && g.coversProtocol(proto) {
			out = append(out, g)
		}
	}
	return out
}

func (g *grant) subjectMatch(u *user) (bool, string) {
	if g.users[u.Name] {
		return true, "names " + u.Name
	}
	for _, r := range g.Roles {
		if u.roles[r] {
			return true, "role " + r
		}
	}
	return false, ""
}

func (g *grant) coversProtocol(proto string) bool { return g.protos == nil || g.protos[proto] }

func (g *grant) targetMatch(a *site.Asset) (bool, string) {
	if g.assets[a.Name] {
		return true, "names " + a.Name
	}
	if g.zones[a.Zone] {
		return true, "zone " + a.Zone
	}
	return false, ""
}

// schedule returns the instants of [from, to) at which g applies to a.
func (g *grant) schedule(a *site.Asset, from, to time.Time) intervals {
	var when intervals
	if len(g.Windows) == 0 && len(g.maint) == 0 {
		when = intervals{{from, to}}
	} else {
		var raw []interval
		if len(g.Windows) > 0 {
			raw = windowIntervals(g.Windows, g.loc, from, to)
		}
		for _, w := range g.maint {
			if w.Covers(a) {
				raw = append(raw, interval{w.Start, w.End})
			}
		}
		when = normalize(raw)
	}
	if len(g.Dates) > 0 {
		when = intersect(when, normalize(dateIntervals(g.Dates, g.loc)))
	}
	return clip(when, from, to)
}

// choose picks the grant deciding at an instant, given which candidates
// apply then: the first applying deny grant, else the most specific
// applying allow grant, else nil (default deny).
func choose(cands []*grant, u *user, a *site.Asset, applies func(i int) bool) *grant {
	var best *grant
	bestScore := -1
	for i, g := range cands {
		if !applies(i) {
			continue
		}
		if g.Effect == site.EffectDeny {
			return g // the first applying deny grant: an explicit deny wins
		}
		score := 0
		if g.assets[a.Name] {
			score += 2
		}
		if g.users[u.Name] {
			score++
		}
		if score > bestScore {
			best, bestScore = g, score
		}
	}
	return best
}

// evaluate returns the grant deciding at t (nil: default deny) and the
// first instant after t at which another grant, or none, would decide.
func evaluate(cands []*grant, u *user, a *site.Asset, t time.Time) (*grant, time.Time) {
	span := 8 * 24 * time.Hour
	for {
		end := t.Add(span)
		scheds := make([]intervals, len(cands))
		var bounds []time.Time
		for i, g := range cands {
			scheds[i] = g.schedule(a, t, end)
			for _, iv := range scheds[i] {
				for _, e := range []time.Time{iv.start, iv.end} {
					if e.After(t) && e.Before(end) {
						bounds = append(bounds, e)
					}
				}
			}
		}
		at := func(e time.Time) *grant {
			return choose(cands, u, a, func(i int) bool { return scheds[i].contains(e) })
		}
		cur := at(t)
		slices.SortFunc(bounds, func(x, y time.Time) int { return x.Compare(y) })
		bounds = slices.CompactFunc(bounds, func(x, y time.Time) bool { return x.Equal(y) })
		for _, e := range bounds {
			if at(e) != cur {
				return cur, e
			}
		}
		if span >= Horizon {
			return cur, time.Time{}
		}
		span = min(span*4, Horizon)
	}
}

// siteZone is the time zone of the site's grants: the site file has no
// site-wide one, each grant with windows or dates names its own
// (time_zone). When they all name the same, it is the site's; none, or
// several different: UTC, and zone says why.
func (p *Policy) siteZone() (loc *time.Location, zone string) {
	for _, g := range p.grants {
		switch {
		case g.TimeZone == "":
		case loc == nil:
			loc, zone = g.loc, g.TimeZone
		case g.TimeZone != zone:
			return time.UTC, fmt.Sprintf("UTC: the site's grants name several time zones, %s and %s", zone, g.TimeZone)
		}
	}
	if loc == nil {
		return time.UTC, "UTC: no grant of the site names a time zone"
	}
	return loc, zone
}

// denyZone is the zone a default deny's times are read in: that of the
// first candidate grant naming one (its windows'), else the site's
// (siteZone; UTC when it has none).
func (p *Policy) denyZone(cands []*grant) (*time.Location, string) {
	for _, g := range cands {
		if g.TimeZone != "" {
			return g.loc, g.TimeZone
		}
	}
	return p.siteZone()
}

// decision words the outcome.
func (p *Policy) decision(cands []*grant, chosen *grant, u *user, a *site.Asset, proto string, t, until time.Time) Decision {
	if chosen == nil {
		d := Decision{Rule: RuleDefaultDeny, Until: until}
		var b strings.Builder
		loc, zone := p.denyZone(cands)
		fmt.Fprintf(&b, "no grant lets %s reach %s over %s at %s (%s)", u.Name, a.Name, proto, t.In(loc).Format(time.RFC3339), zone)
		if len(cands) == 0 {
			b.WriteString(" (no grant names the user or a role of theirs for this asset and protocol)")
		} else {
			var names []string
			for _, g := range cands {
				names = append(names, fmt.Sprintf("%s applies %s", g.Name, g.windows))
			}
			fmt.Fprintf(&b, " (%s)", strings.Join(names, "; "))
		}
		if !until.IsZero() {
			fmt.Fprintf(&b, "; this changes at %s", until.In(loc).Format(time.RFC3339))
		}
		d.Reason = b.String()
		return d
	}
	_, who := chosen.subjectMatch(u)
	_, what := chosen.targetMatch(a)
	verb := "allows"
	if chosen.Effect == site.EffectDeny {
		verb = "denies"
	}
	reason := fmt.Sprintf("grant %q %s %s (%s) %s on %s (%s), %s", chosen.Name, verb, u.Name, who, proto, a.Name, what, chosen.windows)
	if !until.IsZero() {
		reason += ", until " + until.In(chosen.loc).Format(time.RFC3339)
	}
	if chosen.Effect == site.EffectDeny {
		return Decision{Rule: chosen.Name, Reason: reason + "; an explicit deny wins", Until: until}
	}
	d := Decision{Allow: true, Rule: chosen.Name, Reason: reason, Until: until, MaxSession: chosen.MaxSession}
	if proto == "modbus" {
		d.Modbus = chosen.modbus
	}
	return d
}

// describeSchedule says when a grant applies, for people.
func describeSchedule(g *site.Grant) string {
	var parts []string
	for _, w := range g.Windows {
		parts = append(parts, w.String())
	}
	if len(g.Maintenance) > 0 {
		parts = append(parts, "maintenance "+strings.Join(g.Maintenance, ", "))
	}
	when := "at any time"
	if len(parts) > 0 {
		when = strings.Join(parts, " or ")
	}
	if len(g.Dates) > 0 {
		var ds []string
		for _, d := range g.Dates {
			ds = append(ds, d.String())
		}
		when += " on " + strings.Join(ds, ", ")
	}
	if g.TimeZone != "" {
		when += " " + g.TimeZone
	}
	return when
}
