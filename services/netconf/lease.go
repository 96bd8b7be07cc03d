package netconf

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/otgate/otgate/site"
)

// Lease is what the uplink holds from a DHCP server.
type Lease struct {
	Address  netip.Prefix  `cbor:"1,keyasint" json:"address"`
	Gateway  netip.Addr    `cbor:"2,keyasint,omitempty" json:"gateway,omitempty"`
	DNS      []netip.Addr  `cbor:"3,keyasint,omitempty" json:"dns,omitempty"`
	Search   []string      `cbor:"4,keyasint,omitempty" json:"search,omitempty"`
	Server   netip.Addr    `cbor:"5,keyasint" json:"server"`
	Obtained time.Time     `cbor:"6,keyasint" json:"obtained"`
	Duration time.Duration `cbor:"7,keyasint" json:"duration"`
	T1       time.Duration `cbor:"8,keyasint" json:"t1"`
	T2       time.Duration `cbor:"9,keyasint" json:"t2"`
	// NTP are the lease's NTP servers (option 42), IPv4 unicast only, for
	// the timesync service when the site file names none.
	NTP []netip.Addr `cbor:"10,keyasint,omitempty" json:"ntp,omitempty"`
	// NotUsed says what of the lease the uplink does not use, and why:
	// a DNS server on the OT side or not a host's address (DNS then
	// holds the others only; see uplinkDNS).
	NotUsed []string `cbor:"11,keyasint,omitempty" json:"not_used,omitempty"`

	// badNames are the domain names of the ACK that are not DNS names,
	// not kept in Search (bind says so).
	badNames []string
}

// Renew, Rebind and Expiry are the lease's deadlines.
func (l *Lease) Renew() time.Time  { return l.Obtained.Add(l.T1) }
func (l *Lease) Rebind() time.Time { return l.Obtained.Add(l.T2) }
func (l *Lease) Expiry() time.Time { return l.Obtained.Add(l.Duration) }

// leaseFromACK reads a lease out of an ACK received at obtained. T1 and
// T2 default to 1/2 and 7/8 of the lease time (RFC 2131 4.4.5) and are
// forced into order.
func leaseFromACK(ack *dhcpv4.DHCPv4, obtained time.Time) Lease {
	ip, _ := netip.AddrFromSlice(ack.YourIPAddr.To4())
	mask := ack.SubnetMask()
	if mask == nil {
		mask = ack.YourIPAddr.DefaultMask()
	}
	ones, _ := mask.Size()
	l := Lease{Address: netip.PrefixFrom(ip, ones), Obtained: obtained}
	if s, ok := netip.AddrFromSlice(ack.ServerIdentifier().To4()); ok {
		l.Server = s
	}
	for _, r := range ack.Router() {
		if g, ok := netip.AddrFromSlice(r.To4()); ok && l.Address.Masked().Contains(g) && g != ip {
			l.Gateway = g
			break
		}
	}
	for _, d := range ack.DNS() {
		if a, ok := netip.AddrFromSlice(d.To4()); ok {
			l.DNS = append(l.DNS, a)
		}
	}
	for _, n := range ack.NTPServers() {
		if a, ok := netip.AddrFromSlice(n.To4()); ok && a.IsGlobalUnicast() && !slices.Contains(l.NTP, a) {
			l.NTP = append(l.NTP, a)
		}
	}
	// The names go into resolv.conf: only DNS names, or the server
	// writes lines of its own there.
	if ds := ack.DomainSearch(); ds != nil {
		for _, n := range ds.Labels {
			if isDNSName(n) {
				l.Search = append(l.Search, n)
			} else {
				l.badNames = append(l.badNames, n)
			}
		}
	}
	if dn := strings.TrimSuffix(ack.DomainName(), "."); dn != "" && len(l.Search) == 0 {
		if isDNSName(dn) {
			l.Search = []string{dn}
		} else {
			l.badNames = append(l.badNames, dn)
		}
	}
	l.Duration = ack.IPAddressLeaseTime(0)
	if l.Duration <= 0 {
		l.Duration = time.Hour // no lease time: RFC 2131 requires one; be conservative
	}
	l.T1 = ack.IPAddressRenewalTime(l.Duration / 2)
	l.T2 = ack.IPAddressRebindingTime(l.Duration * 7 / 8)
	if l.T2 <= 0 || l.T2 >= l.Duration {
		l.T2 = l.Duration * 7 / 8
	}
	if l.T1 <= 0 || l.T1 >= l.T2 {
		l.T1 = l.Duration / 2
		if l.T1 >= l.T2 {
			l.T1 = l.T2 / 2
		}
	}
	return l
}

// isDNSName says whether s is a DNS name fit for resolv.conf's search
// line: dot-separated labels of 1 to 63 letters, digits, '-' or '_', at
// most 253 characters (a final dot allowed).
func isDNSName(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return true
}

// requestedOptions are asked for in every message.
var requestedOptions = dhcpv4.WithRequestedOptions(
	dhcpv4.OptionSubnetMask,
	dhcpv4.OptionRouter,
	dhcpv4.OptionDomainNameServer,
	dhcpv4.OptionDomainName,
	dhcpv4.OptionDNSDomainSearchList,
	dhcpv4.OptionNTPServers,
	dhcpv4.OptionIPAddressLeaseTime,
	dhcpv4.OptionRenewTimeValue,
	dhcpv4.OptionRebindingTimeValue,
)

func ipOf(a netip.Addr) net.IP { return net.IP(a.AsSlice()) }

// Protected is a range of addresses a DHCP lease must not touch: an OT
// zone's subnet, a downlink's subnet, the overlay prefix. What names it
// in the refusal.
type Protected struct {
	Prefix netip.Prefix
	What   string
}

// checkACK refuses an ACK whose address or mask the uplink must not
// carry, whoever sent it: an address that is not a host's unicast
// address (0.0.0.0, loopback, link-local, multicast, broadcast, class
// E), a subnet mask that is not contiguous (read as /0 it made the whole
// IPv4 space on-link on the uplink) or that is /0, and the network or
// broadcast address of the leased subnet.
func checkACK(ack *dhcpv4.DHCPv4) error {
	ip, ok := netip.AddrFromSlice(ack.YourIPAddr.To4())
	if !ok {
		return fmt.Errorf("no IPv4 address offered (yiaddr %v)", ack.YourIPAddr)
	}
	if err := checkAddr(ip); err != nil {
		return err
	}
	if m := ack.SubnetMask(); m != nil {
		ones, bits := m.Size()
		if bits == 0 {
			return fmt.Errorf("subnet mask %s is not contiguous", net.IP(m))
		}
		if ones == 0 {
			return fmt.Errorf("subnet mask %s (/0) would put every IPv4 address on the uplink", net.IP(m))
		}
	}
	l := leaseFromACK(ack, time.Time{})
	if b := l.Address.Bits(); b <= 30 && (l.Address.Addr() == l.Address.Masked().Addr() || l.Address.Addr() == lastAddr(l.Address)) {
		return fmt.Errorf("address %s is the network or broadcast address of its subnet", l.Address)
	}
	return nil
}

// checkAddr refuses an IPv4 address that is not a host's unicast
// address (checkACK).
func checkAddr(ip netip.Addr) error {
	switch {
	case !ip.Is4():
		return fmt.Errorf("address %s is not IPv4", ip)
	case ip.IsUnspecified() || ip.As4()[0] == 0:
		return fmt.Errorf("address %s is in 0.0.0.0/8 (this network)", ip)
	case ip.IsLoopback():
		return fmt.Errorf("address %s is a loopback address", ip)
	case ip.IsLinkLocalUnicast():
		return fmt.Errorf("address %s is link-local", ip)
	case ip.IsMulticast():
		return fmt.Errorf("address %s is multicast", ip)
	case ip.As4()[0] >= 240:
		return fmt.Errorf("address %s is reserved (240.0.0.0/4) or the broadcast address", ip)
	}
	return nil
}

// protectedRanges are the ranges a DHCP lease on the uplink must not
// overlap: the OT side of the applied policy st (site.Site.OTRanges:
// every zone's subnet, and the overlay prefix, the default one when st
// is nil or names none), and the subnet of every address the gate has
// on the OT side.
func protectedRanges(st *site.Site, plan *Plan) []Protected {
	var out []Protected
	var overlay *Protected
	for _, r := range st.OTRanges() {
		p := Protected{Prefix: r.Prefix, What: r.What()}
		if r.Zone == "" {
			overlay = &p // last, after the downlinks
			continue
		}
		out = append(out, p)
	}
	for _, l := range plan.Links {
		for _, a := range l.Addresses {
			out = append(out, Protected{Prefix: a.Masked(), What: fmt.Sprintf("the subnet of downlink %s", l.Name)})
		}
	}
	if overlay != nil {
		out = append(out, *overlay)
	}
	return out
}

// protectedHolding is the first protected range that holds a.
func protectedHolding(a netip.Addr, protected []Protected) (Protected, bool) {
	for _, p := range protected {
		if p.Prefix.Contains(a) {
			return p, true
		}
	}
	return Protected{}, false
}

// checkProtected refuses a lease whose subnet overlaps a protected
// range: with it the uplink would carry a route into the OT side or the
// overlay (a longer prefix than the zone's own sends the proxy's
// connections for those assets out through the uplink), or the gate
// would hold an asset's address itself. It also refuses a lease whose
// server identifier is in one: renewals (RENEWING) and the release at
// shutdown are sent to that address by unicast, which the kernel would
// route out of a downlink to an OT device.
//
// The router needs no check of its own: leaseFromACK takes only one in
// the leased subnet, which this keeps off every protected range.
func checkProtected(l Lease, protected []Protected) error {
	sub := l.Address.Masked()
	for _, p := range protected {
		if p.Prefix.Overlaps(sub) {
			return fmt.Errorf("leased subnet %s overlaps %s %s", sub, p.What, p.Prefix)
		}
	}
	if p, ok := protectedHolding(l.Server, protected); ok {
		return fmt.Errorf("server identifier %s is in %s %s (renewals and the release would be sent to the OT side)", l.Server, p.What, p.Prefix)
	}
	return nil
}

// uplinkDNS keeps in l.DNS the lease's DNS servers the gate may ask: a
// host's unicast address (checkAddr) outside every protected range (an
// OT device, the overlay: the gate would send its queries there, and
// its answers would decide where the gate's names, NTS and NTP servers
// among them, resolve; the site file refuses such an uplink.dns). A
// lease is unauthenticated: whoever answers on the IT side can name any
// address. The others are left out, said in l.NotUsed.
func (l *Lease) uplinkDNS(protected []Protected) {
	l.DNS, l.NotUsed = dnsToUse(l.DNS, "the lease", checkAddr, protected)
}

// dnsToUse splits servers, the DNS servers of what ("the lease", "the
// static uplink"), into those the gate may ask (keep) and what is not
// used and why, in the order of servers: a server check refuses (nil: no
// check), or one in a protected range (the gate resolves names on the
// uplink side only). When none is left of servers, notUsed ends saying
// so: resolv.conf then names none.
func dnsToUse(servers []netip.Addr, what string, check func(netip.Addr) error, protected []Protected) (keep []netip.Addr, notUsed []string) {
	for _, a := range servers {
		if check != nil {
			if err := check(a); err != nil {
				notUsed = append(notUsed, fmt.Sprintf("DNS server %s of %s: %v: not used", a, what, err))
				continue
			}
		}
		if p, ok := protectedHolding(a, protected); ok {
			notUsed = append(notUsed, fmt.Sprintf("DNS server %s of %s is in %s %s: not used (the gate resolves names on the uplink side only)", a, what, p.What, p.Prefix))
			continue
		}
		keep = append(keep, a)
	}
	if len(keep) == 0 && len(notUsed) > 0 {
		notUsed = append(notUsed, fmt.Sprintf("no DNS server of %s is left: resolv.conf names none", what))
	}
	return keep, notUsed
}

// lastAddr is the highest address of p (its broadcast address).
func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v |= ^uint32(0) >> p.Bits()
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
