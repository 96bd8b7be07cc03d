package netconf

import (
	"fmt"
	"net/netip"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/otgate/otgate/site"
)

// UplinkMode says how the uplink gets its address.
type UplinkMode string

// Uplink modes.
const (
	UplinkDHCP   UplinkMode = "dhcp"
	UplinkStatic UplinkMode = "static"
	// UplinkNone leaves the uplink alone (development hosts).
	UplinkNone UplinkMode = "none"
)

// Uplink is the user and management side. In Config, the empty Mode
// means "as the applied site policy says" (its uplink section; DHCP
// without one); a mode from the flags overrides the site file (a
// development override, with a warning when they disagree).
type Uplink struct {
	Name string
	Mode UplinkMode
	// Static settings (Mode static).
	Address netip.Prefix
	Gateway netip.Addr
	DNS     []netip.Addr
}

// UplinkFromSite is the uplink called name as the site policy's uplink
// section configures it.
func UplinkFromSite(name string, u site.Uplink) Uplink {
	if !u.IsStatic() {
		return Uplink{Name: name, Mode: UplinkDHCP}
	}
	return Uplink{Name: name, Mode: UplinkStatic, Address: u.Address, Gateway: u.Gateway, DNS: append([]netip.Addr(nil), u.DNS...)}
}

// String describes how the uplink is configured: "dhcp", "none (not
// managed)", or "static 192.168.10.5/24 via 192.168.10.1, dns
// 192.168.10.53" (the site package's words for the same settings).
func (u Uplink) String() string {
	switch u.Mode {
	case UplinkStatic:
		return site.Uplink{Mode: site.UplinkStatic, Address: u.Address, Gateway: u.Gateway, DNS: u.DNS}.String()
	case UplinkNone:
		return "none (not managed)"
	}
	return string(u.Mode)
}

// Same says whether u and o configure the uplink alike (the name aside).
func (u Uplink) Same(o Uplink) bool {
	if u.Mode != o.Mode {
		return false
	}
	if u.Mode != UplinkStatic {
		return true
	}
	return site.Uplink{Mode: site.UplinkStatic, Address: u.Address, Gateway: u.Gateway, DNS: u.DNS}.
		Equal(site.Uplink{Mode: site.UplinkStatic, Address: o.Address, Gateway: o.Gateway, DNS: o.DNS})
}

// Downlink is one OT-side interface: a board NIC (eth1) or an 802.1Q
// sub-interface of one (eth1.100) made for a zone. Address is the gate's
// own address and prefix on it (the zero Prefix: none).
type Downlink struct {
	Name    string
	Address netip.Prefix
}

// ParseDownlink parses "NAME" or "NAME=ADDR/LEN" (e.g. eth1=10.77.0.1/24).
func ParseDownlink(s string) (Downlink, error) {
	name, addr, hasAddr := strings.Cut(s, "=")
	if err := checkIfName(name); err != nil {
		return Downlink{}, fmt.Errorf("downlink %q: %w", s, err)
	}
	d := Downlink{Name: name}
	if hasAddr {
		p, err := parseHostPrefix(addr)
		if err != nil {
			return Downlink{}, fmt.Errorf("downlink %q: %w", s, err)
		}
		d.Address = p
	}
	return d, nil
}

// parseHostPrefix parses an IPv4 host address with its prefix length
// (10.77.0.1/24); the network and broadcast addresses are refused.
func parseHostPrefix(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("bad address %q (want e.g. 10.77.0.1/24): %w", s, err)
	}
	if !p.Addr().Is4() {
		return netip.Prefix{}, fmt.Errorf("address %q is not IPv4", s)
	}
	if p.Bits() < 8 || p.Bits() > 32 {
		return netip.Prefix{}, fmt.Errorf("address %q: prefix length %d out of range 8..32", s, p.Bits())
	}
	if site.IsNetworkOrBroadcast(p.Addr(), p) {
		return netip.Prefix{}, fmt.Errorf("address %q is the network or broadcast address of %s", s, p.Masked())
	}
	return p, nil
}

// ParseStaticUplink parses the static uplink settings: address
// "ADDR/LEN", gateway (may be empty) and a comma-separated DNS list.
func ParseStaticUplink(name, addr, gw, dns string) (Uplink, error) {
	u := Uplink{Name: name, Mode: UplinkStatic}
	if err := checkIfName(name); err != nil {
		return u, fmt.Errorf("uplink: %w", err)
	}
	p, err := parseHostPrefix(addr)
	if err != nil {
		return u, fmt.Errorf("uplink address: %w", err)
	}
	u.Address = p
	if gw != "" {
		g, err := netip.ParseAddr(gw)
		if err != nil || !g.Is4() {
			return u, fmt.Errorf("uplink gateway %q: not an IPv4 address", gw)
		}
		if !p.Masked().Contains(g) || g == p.Addr() {
			return u, fmt.Errorf("uplink gateway %s is not another address of the uplink subnet %s", g, p.Masked())
		}
		u.Gateway = g
	}
	for _, d := range strings.Split(dns, ",") {
		if d = strings.TrimSpace(d); d == "" {
			continue
		}
		a, err := netip.ParseAddr(d)
		if err != nil {
			return u, fmt.Errorf("uplink DNS server %q: %w", d, err)
		}
		u.DNS = append(u.DNS, a)
	}
	return u, nil
}

// checkIfName checks a Linux interface name.
func checkIfName(s string) error {
	if s == "" || len(s) > unix.IFNAMSIZ-1 || s == "." || s == ".." || strings.ContainsAny(s, "/:= \t\n") {
		return fmt.Errorf("bad interface name %q (1 to 15 characters, no '/', ':', '=' or spaces)", s)
	}
	return nil
}
