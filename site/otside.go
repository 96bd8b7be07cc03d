package site

import (
	"fmt"
	"net/netip"
)

// OTRange is a range of addresses on the gate's OT side: a zone's
// subnet (the devices behind a downlink) or the overlay prefix (the
// assets' proxy endpoints). What the uplink side tells the gate (the
// site file's uplink section, and a DHCP lease, which anyone on the IT
// side can send) must not point into one: the gate would send its own
// traffic (time, names, its default route) toward an OT device.
type OTRange struct {
	Prefix netip.Prefix
	// Zone is the zone's name; empty for the overlay prefix.
	Zone string
	// Path is where the site file names the range: "zones[2]", or
	// "overlay.prefix" (also for the default prefix).
	Path string
}

// What names the range without its prefix: `zone "cell-1" subnet` or
// "the overlay prefix".
func (r OTRange) What() string {
	if r.Zone == "" {
		return "the overlay prefix"
	}
	return fmt.Sprintf("zone %q subnet", r.Zone)
}

// String names the range with its prefix: `zone "cell-1" subnet
// 10.77.0.0/24` or "the overlay prefix 100.64.0.0/16".
func (r OTRange) String() string { return r.What() + " " + r.Prefix.String() }

// OTRanges lists the OT side's ranges: each zone's subnet in the file's
// order, then the overlay prefix (DefaultOverlayPrefix when s names
// none, as a policy compiled before the overlay section, and when s is
// nil: no policy yet, no zones).
func (s *Site) OTRanges() []OTRange {
	overlay := DefaultOverlayPrefix
	var out []OTRange
	if s != nil {
		for i, z := range s.Zones {
			if z.Subnet.IsValid() {
				out = append(out, OTRange{Prefix: z.Subnet, Zone: z.Name, Path: index("zones", i)})
			}
		}
		if s.Overlay.Prefix.IsValid() {
			overlay = s.Overlay.Prefix
		}
	}
	return append(out, OTRange{Prefix: overlay, Path: "overlay.prefix"})
}

// OTSide says whether a is on the gate's OT side (in a zone's subnet or
// the overlay prefix, OTRanges) and why: `in zone "cell-1" subnet
// 10.77.0.0/24`, "in the overlay prefix 100.64.0.0/16". An address the
// uplink side names (a time or DNS server, a router) that is on the OT
// side is not used.
func (s *Site) OTSide(a netip.Addr) (why string, ok bool) {
	for _, r := range s.OTRanges() {
		if r.Prefix.Contains(a) {
			return "in " + r.String(), true
		}
	}
	return "", false
}
