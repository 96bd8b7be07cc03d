package site

import (
	"gopkg.in/yaml.v3"
)

func decodeMaintenanceWindows(d *decoder, n *yaml.Node, path string, s *Site) {
	for i, it := range d.list(n, path) {
		p := index(path, i)
		f := d.fields(it, p, "name", "description", "start", "end", "zones", "assets")
		d.require(it, p, f, "name", "start", "end")
		var w MaintenanceWindow
		if v, ok := f["name"]; ok {
			w.Name, _ = d.name(v, join(p, "name"))
		}
		if v, ok := f["description"]; ok {
			w.Description, _ = d.str(v, join(p, "description"))
		}
		if v, ok := f["start"]; ok {
			w.Start, _ = d.timestamp(v, join(p, "start"))
		}
		if v, ok := f["end"]; ok {
			w.End, _ = d.timestamp(v, join(p, "end"))
		}
		if v, ok := f["zones"]; ok {
			w.Zones = d.names(v, join(p, "zones"))
		}
		if v, ok := f["assets"]; ok {
			w.Assets = d.names(v, join(p, "assets"))
		}
		if f != nil && f["zones"] == nil && f["assets"] == nil {
			d.nodeErrorf(it, join(p, "zones"), "a maintenance window must list the zones or assets it covers")
		}
		s.Access.MaintenanceWindows = append(s.Access.MaintenanceWindows, w)
	}
}

func validateMaintenanceWindows(v *validator, s *Site) {
	seen := map[string]int{}
	for i := range s.Access.MaintenanceWindows {
		w := &s.Access.MaintenanceWindows[i]
		p := index("maintenance_windows", i)
		if w.Name != "" {
			if first, dup := seen[w.Name]; dup {
				v.errorf(join(p, "name"), "duplicate maintenance window %q (first at line %d)", w.Name, v.d.lines[join(index("maintenance_windows", first), "name")])
			} else {
				seen[w.Name] = i
			}
		}
		if !w.Start.IsZero() && !w.End.IsZero() && !w.End.After(w.Start) {
			v.errorf(join(p, "end"), "end %s is not after start %s", w.End.Format(timeFormat), w.Start.Format(timeFormat))
		}
		for j, z := range w.Zones {
			if v.zones[z] == nil {
				v.errorf(index(join(p, "zones"), j), "unknown zone %q (known: %s)", z, v.knownZones())
			}
		}
		for j, a := range w.Assets {
			if v.assets[a] == nil {
				v.errorf(index(join(p, "assets"), j), "unknown asset %q (known: %s)", a, knownAssets(v))
			}
		}
	}
}

const timeFormat = "2006-01-02T15:04:05Z07:00"

func knownAssets(v *validator) string {
	set := map[string]bool{}
	for n := range v.assets {
		set[n] = true
	}
	if len(set) > 20 {
		return "see the assets section"
	}
	return known(set)
}
