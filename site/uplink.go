package site

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// UplinkMode says how the gate's uplink (the user and management side)
// gets its address.
type UplinkMode string

// Uplink modes. The zero mode is DHCP: a site file without an uplink
// section, or with "mode: dhcp", compiles to no uplink at all (Site.Uplink
// nil), so a policy compiled before the section existed means the same as
// one that says dhcp.
const (
	UplinkDHCP   UplinkMode = "dhcp"
	UplinkStatic UplinkMode = "static"
)

// Uplink is the site file's optional uplink section:
//
//	uplink:
//	  mode: static               # or dhcp (the default without the section)
//	  address: 192.168.10.5/24   # static: the gate's address and prefix length
//	  gateway: 192.168.10.1      # static, optional: default route
//	  dns: [192.168.10.53]       # static, optional
//	  ntp: [192.168.10.1, ntp.plant.example]  # optional, either mode
//	  nts:                       # optional, either mode, instead of ntp
//	    servers: [time.plant.example, 192.168.10.1:4460]
//	    ca: |                    # the CA of the servers' certificates
//	      -----BEGIN CERTIFICATE-----
//	      ...
//
// netconf configures the uplink from it when it starts (a change in a
// policy applied later is reported as pending and takes effect at the
// next netconf restart: applying it live could cut off the management
// session that pushed it).
//
// NTP names the time servers the gate synchronises its clock with
// (services/timesync), IPv4 addresses or DNS names, in either mode. They
// are not part of how netconf configures the uplink (Equal and String
// leave them out): timesync reads them from the applied policy at each
// poll. A DHCP uplink with an ntp list compiles to a non-nil Site.Uplink
// whose Mode is empty (still DHCP, IsStatic false).
//
// NTS names time servers reached with Network Time Security (RFC 8915:
// authenticated NTP) and the CA of their certificates (NTS, uplinknts.go).
// With it, timesync uses those servers only, never plain NTP (not the
// DHCP lease's either); naming ntp as well is an error. Like NTP it is
// left out of Equal and String, and a DHCP uplink with it alone compiles
// to a section whose Mode is empty.
type Uplink struct {
	// Mode is UplinkStatic, or empty for DHCP (see UplinkDHCP).
	Mode    UplinkMode   `cbor:"1,keyasint,omitempty"`
	Address netip.Prefix `cbor:"2,keyasint,omitempty"`
	Gateway netip.Addr   `cbor:"3,keyasint,omitempty"`
	DNS     []netip.Addr `cbor:"4,keyasint,omitempty"`
	// NTP: the time servers, in the file's order: IPv4 addresses in
	// canonical form or lower-case DNS names. Empty: none named (a DHCP
	// uplink may learn them from its lease).
	NTP []string `cbor:"5,keyasint,omitempty"`
	// NTS: the NTS servers and their CA; nil: none named. A new key:
	// a policy compiled before it existed decodes unchanged.
	NTS *NTS `cbor:"6,keyasint,omitempty"`
}

// MaxNTPServers bounds the uplink's ntp list.
const MaxNTPServers = 8

// IsStatic says whether the uplink is configured statically.
func (u Uplink) IsStatic() bool { return u.Mode == UplinkStatic }

// String describes the uplink in one line: "dhcp", or "static
// 192.168.10.5/24 via 192.168.10.1, dns 192.168.10.53".
func (u Uplink) String() string {
	if !u.IsStatic() {
		return string(UplinkDHCP)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "static %s", u.Address)
	if u.Gateway.IsValid() {
		fmt.Fprintf(&b, " via %s", u.Gateway)
	}
	if len(u.DNS) > 0 {
		dns := make([]string, len(u.DNS))
		for i, a := range u.DNS {
			dns[i] = a.String()
		}
		fmt.Fprintf(&b, ", dns %s", strings.Join(dns, " "))
	}
	return b.String()
}

// Equal says whether u and o configure the uplink the same way (the
// address settings netconf applies; NTP servers are not compared: a
// change of them needs no netconf restart).
func (u Uplink) Equal(o Uplink) bool {
	if u.IsStatic() != o.IsStatic() {
		return false
	}
	if !u.IsStatic() {
		return true
	}
	if u.Address != o.Address || u.Gateway != o.Gateway || len(u.DNS) != len(o.DNS) {
		return false
	}
	for i := range u.DNS {
		if u.DNS[i] != o.DNS[i] {
			return false
		}
	}
	return true
}

func decodeUplink(d *decoder, n *yaml.Node, path string, s *Site) {
	f := d.fields(n, path, "mode", "address", "gateway", "dns", "ntp", "nts")
	if f == nil {
		return
	}
	d.require(n, path, f, "mode")
	u := &Uplink{}
	if v, ok := f["ntp"]; ok {
		u.NTP = decodeNTP(d, v, join(path, "ntp"))
	}
	if v, ok := f["nts"]; ok {
		u.NTS = decodeNTS(d, v, join(path, "nts"))
		if ntp, ok := f["ntp"]; ok {
			// With NTS the plain servers would never be asked: saying
			// so beats a list that silently does nothing.
			d.nodeErrorf(ntp, join(path, "ntp"), "not used when uplink.nts names servers (timesync then takes authenticated time only): remove uplink.ntp")
			u.NTP = nil
		}
	}
	mode := UplinkMode("")
	if v, ok := f["mode"]; ok {
		if m, ok := d.str(v, join(path, "mode")); ok {
			switch UplinkMode(m) {
			case UplinkDHCP, UplinkStatic:
				mode = UplinkMode(m)
			default:
				d.nodeErrorf(v, join(path, "mode"), "unknown mode %q (want %s or %s)", m, UplinkDHCP, UplinkStatic)
			}
		}
	}
	if mode == UplinkDHCP {
		// The static settings make no sense with DHCP: the lease gives
		// them. Each is reported where it is.
		for _, k := range []string{"address", "gateway", "dns"} {
			if v, ok := f[k]; ok {
				d.nodeErrorf(v, join(path, k), "only with mode static (mode dhcp takes it from the lease)")
			}
		}
		if len(u.NTP) > 0 || u.NTS != nil {
			// Still DHCP (Mode empty): the section carries only the
			// time servers.
			s.Uplink = &Uplink{NTP: u.NTP, NTS: u.NTS}
		}
		return
	}
	if mode == UplinkStatic {
		u.Mode = UplinkStatic
		s.Uplink = u
		if _, ok := f["address"]; !ok {
			d.nodeErrorf(n, join(path, "address"), "missing (required with mode static)")
		}
	}
	if v, ok := f["address"]; ok {
		u.Address, _ = d.hostPrefix4(v, join(path, "address"))
	}
	if v, ok := f["gateway"]; ok {
		u.Gateway, _ = d.ipv4(v, join(path, "gateway"))
	}
	if v, ok := f["dns"]; ok {
		dp := join(path, "dns")
		seen := map[netip.Addr]int{}
		for i, it := range d.list(v, dp) {
			a, ok := d.ipv4(it, index(dp, i))
			if !ok {
				continue
			}
			if j, dup := seen[a]; dup {
				d.nodeErrorf(it, index(dp, i), "duplicate DNS server %s (also %s)", a, index(dp, j))
				continue
			}
			seen[a] = i
			u.DNS = append(u.DNS, a)
		}
	}
}

// decodeNTP reads the uplink's ntp list: each entry an IPv4 unicast
// address or a DNS name, no duplicates, at most MaxNTPServers.
func decodeNTP(d *decoder, v *yaml.Node, path string) []string {
	return decodeTimeServers(d, v, path, "NTP server", func(it *yaml.Node, ip, s string) (string, bool) {
		return ntpHost(d, it, ip, s)
	})
}

// decodeTimeServers reads a list of time servers (uplink.ntp,
// uplink.nts.servers): at most MaxNTPServers entries, each a string
// that entry checks and returns in canonical form (it reports its own
// errors), no duplicates of that form; what names an entry in errors.
func decodeTimeServers(d *decoder, v *yaml.Node, path, what string, entry func(it *yaml.Node, ip, s string) (string, bool)) []string {
	items := d.list(v, path)
	if len(items) > MaxNTPServers {
		d.nodeErrorf(v, path, "%d servers; at most %d", len(items), MaxNTPServers)
		return nil
	}
	var out []string
	seen := map[string]int{}
	for i, it := range items {
		ip := index(path, i)
		s, ok := d.str(it, ip)
		if !ok {
			continue
		}
		key, ok := entry(it, ip, s)
		if !ok {
			continue
		}
		if j, dup := seen[key]; dup {
			d.nodeErrorf(it, ip, "duplicate %s %s (also %s)", what, key, index(path, j))
			continue
		}
		seen[key] = i
		out = append(out, key)
	}
	return out
}

// ntpHost checks one ntp entry and returns it in canonical form: an IPv4
// address a host may send to (not 0.0.0.0/8, loopback, link-local,
// multicast, reserved or broadcast), or a DNS name (letters, digits and
// hyphens in dot-separated labels of at most 63 characters, 253 in all,
// not all digits), lower-cased. No port: NTP is on 123.
func ntpHost(d *decoder, n *yaml.Node, path, s string) (string, bool) {
	return timeHost(d, n, path, s, "NTP server", "want an IPv4 address or a DNS name, no port")
}

// timeHost checks a time server's host (ntpHost; the host of an NTS-KE
// server) and returns it in canonical form; what names the entry and
// want says what is accepted, in an error.
func timeHost(d *decoder, n *yaml.Node, path, s, what, want string) (string, bool) {
	if a, err := netip.ParseAddr(s); err == nil {
		switch {
		case !a.Is4():
			d.nodeErrorf(n, path, "%q is not an IPv4 address (the uplink is IPv4)", s)
		case a.IsUnspecified() || a.As4()[0] == 0 || a.IsLoopback() || a.IsLinkLocalUnicast() || a.IsMulticast() || a.As4()[0] >= 240:
			d.nodeErrorf(n, path, "%s is not a unicast address a time server can have", a)
		default:
			return a.String(), true
		}
		return "", false
	}
	name := strings.ToLower(strings.TrimSuffix(s, "."))
	if !isDNSName(name) {
		d.nodeErrorf(n, path, "bad %s %q (%s)", what, s, want)
		return "", false
	}
	return name, true
}

// isDNSName says whether s (lower case, no trailing dot) is a host name:
// labels of letters, digits and hyphens, neither starting nor ending
// with a hyphen, 1-63 characters each and 253 in all, and not only
// digits and dots (that is a malformed address, not a name).
func isDNSName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	digits := true
	for _, l := range strings.Split(s, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			switch {
			case c >= 'a' && c <= 'z', c == '-':
				digits = false
			case c >= '0' && c <= '9':
			default:
				return false
			}
		}
	}
	return !digits
}

func validateNTP(v *validator, s *Site, u *Uplink) {
	type server struct{ path, host string }
	var all []server
	for i, h := range u.NTP {
		all = append(all, server{index("uplink.ntp", i), h})
	}
	if u.NTS != nil {
		for i, hp := range u.NTS.Servers {
			h, _, _ := net.SplitHostPort(hp)
			all = append(all, server{index("uplink.nts.servers", i), h})
		}
		validateNTS(v, u.NTS)
	}
	for _, srv := range all {
		path, h := srv.path, srv.host
		a, err := netip.ParseAddr(h)
		if err != nil {
			if u.IsStatic() && len(u.DNS) == 0 && !v.d.failed["uplink.dns"] {
				v.errorf(path, "NTP server %s is a DNS name, but the static uplink has no dns servers to resolve it (add uplink.dns or give an address)", h)
			}
			continue
		}
		for _, r := range v.otSide(s, a) {
			if r.Zone != "" {
				v.errorf(path, "NTP server %s is in %s (at %s); the gate takes its time from the uplink side only", a, r, r.Path)
			} else {
				v.errorf(path, "NTP server %s is in %s", a, r)
			}
		}
		if u.IsStatic() && u.Address.IsValid() && u.Address.Addr() == a {
			v.errorf(path, "NTP server %s is the uplink's own address", a)
		}
	}
}

// otSide lists the OT-side ranges (Site.OTRanges) that hold a, each
// one: a validator reports every clash. The overlay prefix is left out
// when it failed to decode (that is reported already; the default would
// stand in for it).
func (v *validator) otSide(s *Site, a netip.Addr) []OTRange {
	var out []OTRange
	for _, r := range s.OTRanges() {
		if r.Zone == "" && v.d.failed["overlay.prefix"] {
			continue
		}
		if r.Prefix.Contains(a) {
			out = append(out, r)
		}
	}
	return out
}

// hostPrefix4 parses an IPv4 host address with its prefix length
// (192.168.10.5/24): the gate's own address, not a network.
func (d *decoder) hostPrefix4(n *yaml.Node, path string) (netip.Prefix, bool) {
	s, ok := d.str(n, path)
	if !ok {
		return netip.Prefix{}, false
	}
	p, err := netip.ParsePrefix(s)
	if err != nil || !p.Addr().Is4() {
		d.nodeErrorf(n, path, "bad IPv4 address with prefix length %q (want e.g. 192.168.10.5/24)", s)
		return netip.Prefix{}, false
	}
	if p.Bits() < 8 || p.Bits() > 32 {
		d.nodeErrorf(n, path, "prefix length %s of %q is out of range 8..32", strconv.Itoa(p.Bits()), s)
		return netip.Prefix{}, false
	}
	if IsNetworkOrBroadcast(p.Addr(), p) {
		d.nodeErrorf(n, path, "%s is the network or broadcast address of %s (want the gate's own address, e.g. %s/%d)", p.Addr(), p.Masked(), p.Masked().Addr().Next(), p.Bits())
		return netip.Prefix{}, false
	}
	return p, true
}

// validateUplink checks a static uplink against itself and the rest: the
// gateway is another address of the uplink's subnet, and the subnet
// overlaps no zone and not the overlay prefix (the gate would not know
// which side an address is on). NTP servers (either mode) are on the
// uplink's side: not in a zone's subnet or the overlay prefix (the gate
// never takes its time from the OT side, where its own output is
// dropped), not the gate's own uplink address; a server named by DNS
// needs a resolver (a static uplink without dns has none). DNS servers
// are on the uplink's side too (Site.OTSide): the answers decide where
// the gate's names (NTS and NTP servers among them) resolve.
func validateUplink(v *validator, s *Site) {
	u := s.Uplink
	if u == nil {
		return
	}
	validateNTP(v, s, u)
	for i, a := range u.DNS {
		for _, r := range v.otSide(s, a) {
			v.errorf(index("uplink.dns", i), "DNS server %s is in %s (at %s); the gate resolves names on the uplink side only", a, r, r.Path)
		}
	}
	if !u.IsStatic() || !u.Address.IsValid() {
		return
	}
	sub := u.Address.Masked()
	if u.Gateway.IsValid() {
		switch {
		case !sub.Contains(u.Gateway):
			v.errorf("uplink.gateway", "gateway %s is outside the uplink's subnet %s", u.Gateway, sub)
		case u.Gateway == u.Address.Addr():
			v.errorf("uplink.gateway", "gateway %s is the uplink's own address", u.Gateway)
		case IsNetworkOrBroadcast(u.Gateway, sub):
			v.errorf("uplink.gateway", "gateway %s is the network or broadcast address of the uplink's subnet %s", u.Gateway, sub)
		}
	}
	for i, z := range s.Zones {
		if z.Subnet.IsValid() && z.Subnet.Overlaps(sub) {
			v.errorf("uplink.address", "uplink subnet %s overlaps zone %q subnet %s (at %s); the uplink and the OT side must not share addresses", sub, z.Name, z.Subnet, index("zones", i))
		}
	}
	if !v.d.failed["overlay.prefix"] && s.Overlay.Prefix.IsValid() && s.Overlay.Prefix.Overlaps(sub) {
		v.errorf("uplink.address", "uplink subnet %s overlaps the overlay prefix %s", sub, s.Overlay.Prefix)
	}
}
