package site

import (
	"time"

	"gopkg.in/yaml.v3"
)

func decodeGrants(d *decoder, n *yaml.Node, path string, s *Site) {
	for i, it := range d.list(n, path) {
		p := index(path, i)
		f := d.fields(it, p, "name", "description", "effect", "subjects", "targets", "protocols",
			"time_zone", "windows", "dates", "maintenance", "max_session", "modbus")
		d.require(it, p, f, "name", "subjects", "targets")
		g := Grant{Effect: EffectAllow}
		if v, ok := f["name"]; ok {
			g.Name, _ = d.name(v, join(p, "name"))
		}
		if v, ok := f["description"]; ok {
			g.Description, _ = d.str(v, join(p, "description"))
		}
		if v, ok := f["effect"]; ok {
			if e, ok := d.str(v, join(p, "effect")); ok {
				switch Effect(e) {
				case EffectAllow, EffectDeny:
					g.Effect = Effect(e)
				default:
					d.nodeErrorf(v, join(p, "effect"), "unknown effect %q (want allow or deny)", e)
				}
			}
		}
		if v, ok := f["subjects"]; ok {
			sp := join(p, "subjects")
			sf := d.fields(v, sp, "users", "roles")
			if uv, ok := sf["users"]; ok {
				g.Users = d.names(uv, join(sp, "users"))
			}
			if rv, ok := sf["roles"]; ok {
				g.Roles = d.names(rv, join(sp, "roles"))
			}
			if sf != nil && len(g.Users)+len(g.Roles) == 0 && !d.failedUnder(sp) {
				d.nodeErrorf(v, sp, "want at least one user or role")
			}
		}
		if v, ok := f["targets"]; ok {
			tp := join(p, "targets")
			tf := d.fields(v, tp, "assets", "zones")
			if av, ok := tf["assets"]; ok {
				g.Assets = d.names(av, join(tp, "assets"))
			}
			if zv, ok := tf["zones"]; ok {
				g.Zones = d.names(zv, join(tp, "zones"))
			}
			if tf != nil && len(g.Assets)+len(g.Zones) == 0 && !d.failedUnder(tp) {
				d.nodeErrorf(v, tp, "want at least one asset or zone")
			}
		}
		if v, ok := f["protocols"]; ok {
			pp := join(p, "protocols")
			seen := map[string]bool{}
			for j, it := range d.list(v, pp) {
				proto, ok := decodeProtocol(d, it, index(pp, j))
				if !ok {
					continue
				}
				if seen[proto] {
					d.nodeErrorf(it, index(pp, j), "%q listed twice", proto)
					continue
				}
				seen[proto] = true
				g.Protocols = append(g.Protocols, proto)
			}
		}
		if v, ok := f["time_zone"]; ok {
			if tz, ok := d.str(v, join(p, "time_zone")); ok {
				if _, err := loadLocation(tz); err != nil {
					d.nodeErrorf(v, join(p, "time_zone"), "%v", err)
				} else {
					g.TimeZone = tz
				}
			}
		}
		if v, ok := f["windows"]; ok {
			wp := join(p, "windows")
			var items []*yaml.Node
			if d.restricts(v, wp, "windows", "for any time") {
				items = d.list(v, wp)
			}
			for j, it := range items {
				if w, ok := decodeWindow(d, it, index(wp, j)); ok {
					g.Windows = append(g.Windows, w)
				}
			}
		}
		if v, ok := f["dates"]; ok {
			dp := join(p, "dates")
			var items []*yaml.Node
			if d.restricts(v, dp, "dates", "for every date") {
				items = d.list(v, dp)
			}
			for j, it := range items {
				if r, ok := decodeDateRange(d, it, index(dp, j)); ok {
					g.Dates = append(g.Dates, r)
				}
			}
		}
		if v, ok := f["maintenance"]; ok && d.restricts(v, join(p, "maintenance"), "maintenance", "for no maintenance window") {
			g.Maintenance = d.names(v, join(p, "maintenance"))
		}
		if v, ok := f["max_session"]; ok {
			g.MaxSession, _ = d.duration(v, join(p, "max_session"))
		}
		if v, ok := f["modbus"]; ok {
			if v.Kind == yaml.SequenceNode {
				if bs, ok := decodeModbusBlocks(d, v, join(p, "modbus"), g.Name); ok {
					g.ModbusBlocks = bs
				}
			} else if r, ok := decodeModbusRules(d, v, join(p, "modbus"), g.Name); ok {
				g.Modbus = r
			}
		}
		s.Access.Grants = append(s.Access.Grants, g)
	}
}

// failedUnder reports whether a problem was already reported at or under
// path.
func (d *decoder) failedUnder(path string) bool {
	for p := range d.failed {
		if p == path || len(p) > len(path) && p[:len(path)] == path && (p[len(path)] == '.' || p[len(path)] == '[') {
			return true
		}
	}
	return false
}

// loadLocation loads an IANA time zone. Binaries that load site files
// must embed the zone database (import _ "time/tzdata"): the appliance
// image has no /usr/share/zoneinfo.
func loadLocation(name string) (*time.Location, error) {
	if name == "Local" {
		return nil, errBadZone(name, "\"Local\" depends on the machine; name the zone, e.g. Europe/Berlin")
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, errBadZone(name, "not an IANA time zone (want e.g. Europe/Berlin, America/Chicago, UTC)")
	}
	return loc, nil
}

type zoneError struct{ name, why string }

func (e zoneError) Error() string { return "unknown time zone " + `"` + e.name + `": ` + e.why }

func errBadZone(name, why string) error { return zoneError{name, why} }
