package site

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

func decodeZones(d *decoder, n *yaml.Node, path string, s *Site) {
	for i, it := range d.list(n, path) {
		p := index(path, i)
		f := d.fields(it, p, "name", "owner", "mode", "interface", "vlan", "subnet", "gate_address")
		d.require(it, p, f, "name", "owner", "mode", "interface", "subnet", "gate_address")
		var z Zone
		if v, ok := f["name"]; ok {
			z.Name, _ = d.name(v, join(p, "name"))
		}
		if v, ok := f["owner"]; ok {
			z.Owner, _ = d.str(v, join(p, "owner"))
		}
		if v, ok := f["mode"]; ok {
			if m, ok := d.str(v, join(p, "mode")); ok {
				switch Mode(m) {
				case ModeMonitor, ModeEnforce:
					z.Mode = Mode(m)
				default:
					d.nodeErrorf(v, join(p, "mode"), "unknown mode %q (want %s or %s)", m, ModeMonitor, ModeEnforce)
				}
			}
		}
		if v, ok := f["interface"]; ok {
			if name, ok := d.str(v, join(p, "interface")); ok {
				if err := checkIfName(name); err != nil {
					d.nodeErrorf(v, join(p, "interface"), "%v", err)
				} else {
					z.Interface = name
				}
			}
		}
		if v, ok := f["vlan"]; ok {
			z.VLAN, _ = d.integer(v, join(p, "vlan"), 1, 4094)
		}
		if v, ok := f["subnet"]; ok {
			z.Subnet, _ = d.prefix4(v, join(p, "subnet"))
		}
		if v, ok := f["gate_address"]; ok {
			z.GateAddress, _ = d.ipv4(v, join(p, "gate_address"))
		}
		s.Zones = append(s.Zones, z)
	}
}

// checkIfName checks a Linux interface name (at most 15 bytes, no '/',
// ':' or white space).
func checkIfName(s string) error {
	if len(s) > 15 || s == "." || s == ".." || strings.ContainsAny(s, "/: \t\n") {
		return fmt.Errorf("bad interface name %q (at most 15 characters, no '/', ':' or spaces)", s)
	}
	return nil
}

func validateZones(v *validator, s *Site) {
	v.zones = map[string]*Zone{}
	v.gates = map[netip.Addr]int{}
	vlans := map[string]int{} // parent/vlan -> zone index
	for i := range s.Zones {
		z := &s.Zones[i]
		p := index("zones", i)
		if z.Name != "" {
			if first, dup := v.zones[z.Name]; dup {
				v.errorf(join(p, "name"), "duplicate zone %q (first at line %d)", z.Name, v.d.lines[join(zonePath(s, first), "name")])
			} else {
				v.zones[z.Name] = z
			}
		}
		if z.VLAN != 0 && z.Interface != "" {
			if name := z.IfName(); checkIfName(name) != nil {
				v.errorf(join(p, "vlan"), "the VLAN interface %q would be longer than Linux's 15 characters (interface %q, VLAN %d): give the interface a shorter name", name, z.Interface, z.VLAN)
			}
			key := fmt.Sprintf("%s/%d", z.Interface, z.VLAN)
			if j, dup := vlans[key]; dup {
				v.errorf(join(p, "vlan"), "duplicate VLAN %d on interface %s (also zone %q)", z.VLAN, z.Interface, s.Zones[j].Name)
			} else {
				vlans[key] = i
			}
		}
		if a := z.Subnet.Addr(); z.Subnet.IsValid() && (a.As4()[0] == 0 || a.IsLoopback() || a.IsMulticast() || a.As4()[0] >= 240) {
			v.errorf(join(p, "subnet"), "subnet %s is not unicast address space devices can have (0/8, 127/8, multicast 224/4 and 240/4 are not)", z.Subnet)
		}
		if z.Subnet.IsValid() {
			for j := 0; j < i; j++ {
				o := s.Zones[j]
				if o.Subnet.IsValid() && o.Subnet.Overlaps(z.Subnet) {
					v.errorf(join(p, "subnet"), "subnet %s overlaps zone %q subnet %s", z.Subnet, o.Name, o.Subnet)
				}
			}
		}
		validateGateAddress(v, s, i)
	}
}

// validateGateAddress checks zone i's gate address: a host address of the
// zone's subnet that no other zone uses. Assets, exceptions and the
// overlay check theirs against v.gates.
func validateGateAddress(v *validator, s *Site, i int) {
	z := &s.Zones[i]
	gp := join(index("zones", i), "gate_address")
	if !z.GateAddress.IsValid() {
		return
	}
	if j, dup := v.gates[z.GateAddress]; dup {
		v.errorf(gp, "gate address %s is also zone %q's (line %d); each zone needs its own", z.GateAddress, s.Zones[j].Name, v.d.lines[join(index("zones", j), "gate_address")])
		return
	}
	v.gates[z.GateAddress] = i
	if !z.Subnet.IsValid() {
		return
	}
	switch {
	case !z.Subnet.Contains(z.GateAddress):
		v.errorf(gp, "gate address %s is outside the zone's subnet %s", z.GateAddress, z.Subnet)
	case IsNetworkOrBroadcast(z.GateAddress, z.Subnet):
		v.errorf(gp, "gate address %s is the network or broadcast address of the zone's subnet %s", z.GateAddress, z.Subnet)
	}
}

// gateZone returns the zone whose gate address is a, if any.
func (v *validator) gateZone(s *Site, a netip.Addr) (*Zone, string, bool) {
	i, ok := v.gates[a]
	if !ok {
		return nil, "", false
	}
	return &s.Zones[i], join(index("zones", i), "gate_address"), true
}

func zonePath(s *Site, z *Zone) string {
	for i := range s.Zones {
		if &s.Zones[i] == z {
			return index("zones", i)
		}
	}
	return "zones"
}

// knownZones lists zone names for "unknown zone" messages.
func (v *validator) knownZones() string {
	var names []string
	for n := range v.zones {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(names) == 0 {
		return "none declared"
	}
	return strings.Join(names, ", ")
}
