package netconf

import (
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"github.com/otgate/otgate/site"
)

// LinkPlan is the desired state of one OT-side interface.
type LinkPlan struct {
	Name string
	// Parent and VLAN are set for an 802.1Q sub-interface.
	Parent string
	VLAN   int
	// Addresses are the gate's own addresses on the interface.
	Addresses []netip.Prefix
	// Zones served on this interface.
	Zones []string
}

// Plan is the desired state of the OT side: board downlinks first, then
// the VLAN sub-interfaces on them (the order they are brought up in).
type Plan struct {
	Links    []LinkPlan
	Warnings []string
}

// Link returns the planned interface called name.
func (p *Plan) Link(name string) (LinkPlan, bool) {
	for _, l := range p.Links {
		if l.Name == name {
			return l, true
		}
	}
	return LinkPlan{}, false
}

// Addresses maps interface names to the gate's addresses on them, as given
// by -downlink NAME=ADDR/LEN and -address NAME=ADDR/LEN: overrides for
// development (the site file's zones name the gate's addresses).
type Addresses map[string][]netip.Prefix

// MakePlan computes the OT side from the board's downlinks, the zones of
// the applied policy (nil: no policy yet) and the gate's addresses from
// the flags. Each zone's gate address (site.Zone.GateAddress, with the
// zone subnet's length) goes on the zone's interface, unless an address
// from the flags on that interface is in the same subnet: that one
// overrides it (a warning). A zone on an interface that is not a downlink
// of this gate, a flag address outside every zone subnet of its interface
// or any gate address overlapping another is an error, and nothing of
// the plan is applied.
func MakePlan(uplink string, downlinks []string, addrs Addresses, zones []site.Zone) (*Plan, error) {
	p := &Plan{}
	isDown := map[string]bool{}
	for _, d := range downlinks {
		if err := checkIfName(d); err != nil {
			return nil, fmt.Errorf("netconf: downlink: %w", err)
		}
		if d == uplink {
			return nil, fmt.Errorf("netconf: %s is both the uplink and a downlink", d)
		}
		if isDown[d] {
			return nil, fmt.Errorf("netconf: downlink %s listed twice", d)
		}
		isDown[d] = true
		p.Links = append(p.Links, LinkPlan{Name: d, Addresses: sortedPrefixes(addrs[d])})
	}
	index := map[string]int{}
	for i, l := range p.Links {
		index[l.Name] = i
	}
	known := strings.Join(downlinks, ", ")
	if known == "" {
		known = "none"
	}
	var vlans []LinkPlan
	for _, z := range zones {
		if z.Interface == uplink {
			return nil, fmt.Errorf("netconf: zone %q: interface %s is the uplink, not an OT downlink", z.Name, z.Interface)
		}
		if !isDown[z.Interface] {
			return nil, fmt.Errorf("netconf: zone %q: interface %s is not a downlink of this gate (downlinks: %s)", z.Name, z.Interface, known)
		}
		name := z.IfName()
		if z.VLAN != 0 {
			if err := checkIfName(name); err != nil {
				return nil, fmt.Errorf("netconf: zone %q: VLAN %d on %s: %w", z.Name, z.VLAN, z.Interface, err)
			}
			if _, dup := index[name]; !dup {
				index[name] = -1 - len(vlans)
				vlans = append(vlans, LinkPlan{Name: name, Parent: z.Interface, VLAN: z.VLAN, Addresses: sortedPrefixes(addrs[name])})
			}
		}
		var lp *LinkPlan
		if i := index[name]; i >= 0 {
			lp = &p.Links[i]
		} else {
			lp = &vlans[-1-i]
		}
		lp.Zones = append(lp.Zones, z.Name)
		// The zone's gate address comes from the site file; an address
		// from the flags in the same subnet overrides it (development).
		var flag netip.Prefix
		for _, a := range addrs[name] {
			if a.Masked() == z.Subnet.Masked() {
				flag = a
			}
		}
		gate := z.GatePrefix()
		switch {
		case flag.IsValid() && gate.IsValid() && flag != gate:
			p.Warnings = append(p.Warnings, fmt.Sprintf("zone %q on %s: gate address %s from the flags overrides the site file's %s", z.Name, name, flag, gate))
		case flag.IsValid():
		case gate.IsValid():
			lp.Addresses = append(lp.Addresses, gate)
		default:
			p.Warnings = append(p.Warnings, fmt.Sprintf("zone %q on %s: no gate address in %s (the applied policy names none: re-apply the site file with the zone's gate_address); its assets cannot be reached or probed",
				z.Name, name, z.Subnet))
		}
	}
	for i := range p.Links {
		p.Links[i].Addresses = sortedPrefixes(p.Links[i].Addresses)
	}
	for i := range vlans {
		vlans[i].Addresses = sortedPrefixes(vlans[i].Addresses)
	}
	p.Links = append(p.Links, vlans...)

	// Every gate address must sit on a planned interface, in one of its
	// zones' subnets when it has zones, and not overlap another.
	var names []string
	for n := range addrs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		lp, ok := p.Link(n)
		if !ok {
			// A VLAN interface of a downlink (eth1.100) may get its gate
			// address before the policy names a zone on that VLAN.
			if !isDown[n] && (len(zones) == 0 || isDown[vlanParent(n)]) {
				p.Warnings = append(p.Warnings, fmt.Sprintf("address for %s waits for a zone naming that VLAN interface", n))
				continue
			}
			if !isDown[n] {
				return nil, fmt.Errorf("netconf: address for %s: not a downlink (%s) nor the VLAN interface of a zone", n, known)
			}
		}
		for _, a := range addrs[n] {
			if len(lp.Zones) == 0 {
				continue
			}
			match := false
			for _, z := range zones {
				if z.IfName() == n && z.Subnet.Masked() == a.Masked() {
					match = true
				}
			}
			if !match {
				var subs []string
				for _, z := range zones {
					if z.IfName() == n {
						subs = append(subs, fmt.Sprintf("%s %s", z.Name, z.Subnet))
					}
				}
				return nil, fmt.Errorf("netconf: gate address %s on %s is in no zone subnet of that interface (zones: %s)", a, n, strings.Join(subs, ", "))
			}
		}
	}
	type owned struct {
		link string
		p    netip.Prefix
	}
	var all []owned
	for _, l := range p.Links {
		for _, a := range l.Addresses {
			for _, o := range all {
				if o.p.Overlaps(a) {
					return nil, fmt.Errorf("netconf: gate address %s on %s overlaps %s on %s", a, l.Name, o.p, o.link)
				}
			}
			all = append(all, owned{l.Name, a})
		}
	}
	return p, nil
}

// vlanParent is the parent of a VLAN interface name "parent.vid" (vid
// 1-4094), or "".
func vlanParent(name string) string {
	parent, vid, ok := strings.Cut(name, ".")
	if n, err := strconv.Atoi(vid); !ok || err != nil || n < 1 || n > 4094 || strconv.Itoa(n) != vid {
		return ""
	}
	return parent
}

// zoneIfName is the interface a zone lives on (parent.vlan for a VLAN).
func sortedPrefixes(ps []netip.Prefix) []netip.Prefix {
	out := append([]netip.Prefix(nil), ps...)
	sort.Slice(out, func(i, j int) bool { return out[i].Addr().Less(out[j].Addr()) })
	return out
}
