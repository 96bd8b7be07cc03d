package site

import (
	"fmt"
	"slices"
)

func validateGrants(v *validator, s *Site) {
	users := map[string]bool{}
	for _, u := range s.Access.Users {
		if u.Name != "" {
			users[u.Name] = true
		}
	}
	roles := roleSet(s)
	windows := map[string]*MaintenanceWindow{}
	windowNames := map[string]bool{}
	windowFailed := map[string]bool{}
	for i := range s.Access.MaintenanceWindows {
		w := &s.Access.MaintenanceWindows[i]
		if w.Name != "" {
			windows[w.Name] = w
			windowNames[w.Name] = true
			windowFailed[w.Name] = v.d.failedUnder(index("maintenance_windows", i))
		}
	}
	seen := map[string]int{}
	for i := range s.Access.Grants {
		g := &s.Access.Grants[i]
		p := index("grants", i)
		if g.Name != "" {
			if slices.Contains(ReservedRuleNames, g.Name) {
				v.errorf(join(p, "name"), "%q is reserved for the decision engine's own outcomes; pick another grant name", g.Name)
			} else if first, dup := seen[g.Name]; dup {
				v.errorf(join(p, "name"), "duplicate grant %q (first at line %d)", g.Name, v.d.lines[join(index("grants", first), "name")])
			} else {
				seen[g.Name] = i
			}
		}
		for j, u := range g.Users {
			if !users[u] {
				v.errorf(index(join(p, "subjects.users"), j), "unknown user %q (known: %s)", u, known(users))
			}
		}
		for j, r := range g.Roles {
			if !roles[r] {
				v.errorf(index(join(p, "subjects.roles"), j), "unknown role %q (known: %s)", r, known(roles))
			}
		}
		targets := grantTargets(v, s, g, p)
		validateGrantProtocols(v, g, p, targets)
		timed := len(g.Windows) > 0 || len(g.Dates) > 0
		if timed && g.TimeZone == "" && !v.d.failed[join(p, "time_zone")] {
			v.errorfAt(p, join(p, "time_zone"), "missing (required with windows or dates; e.g. Europe/Berlin)")
		}
		if !timed && g.TimeZone != "" && !v.d.failedUnder(join(p, "windows")) && !v.d.failedUnder(join(p, "dates")) {
			v.errorf(join(p, "time_zone"), "time zone %q given but the grant has no windows or dates", g.TimeZone)
		}
		for j, name := range g.Maintenance {
			mp := index(join(p, "maintenance"), j)
			w := windows[name]
			if w == nil {
				v.errorf(mp, "unknown maintenance window %q (known: %s)", name, known(windowNames))
				continue
			}
			covered := false
			for _, a := range targets {
				if w.Covers(a) {
					covered = true
					break
				}
			}
			if len(targets) > 0 && !covered && !windowFailed[name] {
				v.errorf(mp, "maintenance window %q covers none of the grant's targets", name)
			}
		}
		if g.Effect == EffectDeny {
			if g.MaxSession != 0 {
				v.errorf(join(p, "max_session"), "a deny grant has no sessions; remove max_session")
			}
			if g.HasModbusRules() {
				v.errorf(join(p, "modbus"), "a deny grant has no protocol rules; remove modbus (deny grants deny the whole protocol)")
			}
		}
	}
}

// grantTargets resolves a grant's targets to assets, reporting unknown
// names and zones without assets.
func grantTargets(v *validator, s *Site, g *Grant, p string) []*Asset {
	var out []*Asset
	seen := map[string]bool{}
	for j, name := range g.Assets {
		a := v.assets[name]
		if a == nil {
			v.errorf(index(join(p, "targets.assets"), j), "unknown asset %q (known: %s)", name, knownAssets(v))
			continue
		}
		if !seen[a.Name] {
			seen[a.Name] = true
			out = append(out, a)
		}
	}
	for j, name := range g.Zones {
		if v.zones[name] == nil {
			v.errorf(index(join(p, "targets.zones"), j), "unknown zone %q (known: %s)", name, v.knownZones())
			continue
		}
		n := 0
		for k := range s.Assets {
			a := &s.Assets[k]
			if a.Zone != name {
				continue
			}
			n++
			if !seen[a.Name] {
				seen[a.Name] = true
				out = append(out, a)
			}
		}
		if n == 0 && g.Effect == EffectAllow {
			v.errorf(index(join(p, "targets.zones"), j), "zone %q has no assets", name)
		}
	}
	return out
}

func validateGrantProtocols(v *validator, g *Grant, p string, targets []*Asset) {
	pp := join(p, "protocols")
	if len(g.Protocols) == 0 {
		if g.Effect == EffectAllow && !v.d.failedUnder(pp) && !v.d.failed[join(p, "effect")] {
			v.errorfAt(p, pp, "missing (an allow grant names the protocols it allows, e.g. [modbus])")
		}
	}
	allTargetsKnown := !v.d.failedUnder(join(p, "targets"))
	for j, proto := range g.Protocols {
		served := false
		for _, a := range targets {
			for _, svc := range a.Services {
				if svc.Protocol == proto {
					served = true
				}
			}
		}
		if !served && allTargetsKnown && len(targets) > 0 {
			v.errorf(index(pp, j), "none of the grant's targets serves %q (%s)", proto, servedProtocols(targets))
		}
	}
	hasModbus := slices.Contains(g.Protocols, "modbus")
	switch {
	case g.Effect == EffectAllow && hasModbus && !g.HasModbusRules() && !v.d.failedUnder(join(p, "modbus")):
		v.errorfAt(p, join(p, "modbus"), "missing (an allow grant for modbus says which operations it allows: units, functions, ranges)")
	case g.HasModbusRules() && !hasModbus && g.Effect == EffectAllow:
		v.errorf(join(p, "modbus"), "modbus rules on a grant whose protocols do not include modbus")
	}
}

func servedProtocols(targets []*Asset) string {
	set := map[string]bool{}
	for _, a := range targets {
		for _, svc := range a.Services {
			set[svc.Protocol] = true
		}
	}
	return fmt.Sprintf("they serve: %s", known(set))
}

// errorfAt reports a problem of path at the line recorded for linePath
// (for a missing field: the line of the item it is missing from).
func (v *validator) errorfAt(linePath, path, format string, args ...any) {
	v.d.errorf(v.d.lines[linePath], path, format, args...)
}
