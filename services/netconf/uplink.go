package netconf

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// UplinkConfig is what the uplink should carry: one address (with a
// lifetime for a lease, zero for static), a default route and DNS.
type UplinkConfig struct {
	Address  netip.Prefix
	Lifetime time.Duration // 0: permanent
	Gateway  netip.Addr    // zero: no default route
	DNS      []netip.Addr
	Search   []string

	// rewriteDNS writes resolv.conf even when DNS and Search are empty:
	// a static uplink whose every DNS server was left out (dnsToUse)
	// must not leave an earlier file's servers there.
	rewriteDNS bool
}

// foreverLft is the kernel's infinite address lifetime
// (INFINITY_LIFE_TIME).
const foreverLft = 0xffffffff

// uplinkLink applies UplinkConfig to the uplink interface. It owns the
// addresses labelled OwnerLabel(name) and the default routes on the
// uplink with its route protocol (static or dhcp); nothing else. Before
// it changes addresses it turns on the uplink's promote_secondaries (see
// promoteSecondaries) in ns, the namespace of h.
type uplinkLink struct {
	h        *netlink.Handle
	ns       netns.NsHandle
	name     string
	proto    netlink.RouteProtocol
	resolver *Resolver
	source   string // for resolv.conf: "dhcp from 10.0.0.1", "static"
}

func (u *uplinkLink) link() (netlink.Link, error) {
	l, err := u.h.LinkByName(u.name)
	if err != nil {
		return nil, fmt.Errorf("netconf: uplink %s: %w", u.name, err)
	}
	return l, nil
}

// up brings the uplink up (DHCP needs a running link before an address).
func (u *uplinkLink) up() error {
	l, err := u.link()
	if err != nil {
		return err
	}
	if l.Attrs().Flags&net.FlagUp == 0 {
		if err := u.h.LinkSetUp(l); err != nil {
			return fmt.Errorf("netconf: bring up uplink %s: %w", u.name, err)
		}
	}
	return nil
}

// apply installs c: its address (replacing the lifetime of an existing
// one), removes other owned addresses, sets the default route, writes DNS.
// It reports whether anything in the kernel changed.
func (u *uplinkLink) apply(c UplinkConfig) (bool, error) {
	if err := u.up(); err != nil {
		return false, err
	}
	l, err := u.link()
	if err != nil {
		return false, err
	}
	label := OwnerLabel(u.name)
	have, err := u.h.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		return false, fmt.Errorf("netconf: list addresses of %s: %w", u.name, err)
	}
	// A foreign address on ours refuses the configuration before
	// anything is removed: a refused one changes nothing.
	for _, a := range have {
		if p, ok := addrPrefix(a); ok && a.Label != label && p.Addr() == c.Address.Addr() {
			return false, fmt.Errorf("netconf: %s on uplink %s carries label %q: %w", p, u.name, a.Label, ErrForeign)
		}
	}
	present := false
	var remove []netlink.Addr
	for _, a := range have {
		p, ok := addrPrefix(a)
		if !ok || a.Label != label {
			continue
		}
		if p == c.Address {
			// A static address must be permanent: one a DHCP run that
			// died left (same address, the lease's lifetime) would
			// otherwise expire with that lease and take the uplink with it.
			present = c.Lifetime > 0 || a.ValidLft == foreverLft
			continue
		}
		remove = append(remove, a)
	}
	// Removing the old address (or the kernel expiring a lease's) must
	// not take the foreign ones of its subnet with it. When
	// promote_secondaries cannot be set, the error is returned in the end,
	// and the configuration is refused (nothing changed) if a foreign
	// address would be lost now.
	changed, perr := promoteSecondaries(u.ns, u.name)
	if perr != nil {
		if err := guardRemovals(perr, u.name, have, remove, label); err != nil {
			return changed, err
		}
	}
	fail := func(err error) (bool, error) { return changed, errors.Join(perr, err) }
	for _, a := range remove {
		p, _ := addrPrefix(a)
		del := a
		if err := u.h.AddrDel(l, &del); err != nil {
			return fail(fmt.Errorf("netconf: remove old %s from %s: %w", p, u.name, err))
		}
		changed = true
	}
	ad := &netlink.Addr{IPNet: prefixIPNet(c.Address), Label: label, ValidLft: foreverLft, PreferedLft: foreverLft}
	if c.Lifetime > 0 {
		secs := int(c.Lifetime / time.Second)
		if secs < 1 {
			secs = 1
		}
		ad.ValidLft, ad.PreferedLft = secs, secs
	}
	if !present || c.Lifetime > 0 {
		if err := u.h.AddrReplace(l, ad); err != nil {
			return fail(fmt.Errorf("netconf: set %s on %s: %w", c.Address, u.name, err))
		}
		changed = changed || !present
	}
	rc, err := u.setDefaultRoute(l, c.Gateway)
	changed = changed || rc
	if err != nil {
		return fail(err)
	}
	// A lease always rewrites the file: one with no DNS server left to
	// use (uplinkDNS) must not leave an earlier lease's there; so does a
	// static uplink that names servers, none of them left.
	if len(c.DNS) > 0 || len(c.Search) > 0 || u.proto == unix.RTPROT_DHCP || c.rewriteDNS {
		if err := u.resolver.Write(u.source, c.DNS, c.Search); err != nil {
			return fail(err)
		}
	}
	return changed, perr
}

// defaultRoutes lists the IPv4 default routes of the main table.
func (u *uplinkLink) defaultRoutes() ([]netlink.Route, error) {
	rs, err := u.h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("netconf: list routes: %w", err)
	}
	var out []netlink.Route
	for _, r := range rs {
		if r.Dst == nil || r.Dst.String() == "0.0.0.0/0" {
			out = append(out, r)
		}
	}
	return out, nil
}

func (u *uplinkLink) owns(r netlink.Route, l netlink.Link) bool {
	return r.LinkIndex == l.Attrs().Index && r.Protocol == u.proto
}

// setDefaultRoute makes the owned default route go via gw (zero: none). A
// foreign default route of the same metric is left alone and reported.
func (u *uplinkLink) setDefaultRoute(l netlink.Link, gw netip.Addr) (bool, error) {
	rs, err := u.defaultRoutes()
	if err != nil {
		return false, err
	}
	changed := false
	have := false
	for _, r := range rs {
		if !u.owns(r, l) {
			if gw.IsValid() && r.Priority == 0 {
				return changed, fmt.Errorf("netconf: a default route via %s (protocol %s) is already there: %w; left alone", r.Gw, r.Protocol, ErrForeign)
			}
			continue
		}
		if gw.IsValid() && r.Gw != nil && r.Gw.Equal(gw.AsSlice()) {
			have = true
			continue
		}
		del := r
		if err := u.h.RouteDel(&del); err != nil {
			return changed, fmt.Errorf("netconf: remove old default route via %s: %w", r.Gw, err)
		}
		changed = true
	}
	if !gw.IsValid() || have {
		return changed, nil
	}
	r := &netlink.Route{LinkIndex: l.Attrs().Index, Gw: gw.AsSlice(), Protocol: u.proto, Table: unix.RT_TABLE_MAIN}
	if err := u.h.RouteAdd(r); err != nil {
		return changed, fmt.Errorf("netconf: default route via %s on %s: %w", gw, u.name, err)
	}
	return true, nil
}

// owned lists the addresses the uplink carries with the owner label.
func (u *uplinkLink) owned() ([]netip.Prefix, error) {
	l, err := u.link()
	if err != nil {
		return nil, err
	}
	have, err := u.h.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("netconf: list addresses of %s: %w", u.name, err)
	}
	var out []netip.Prefix
	for _, a := range have {
		if p, ok := addrPrefix(a); ok && a.Label == OwnerLabel(u.name) {
			out = append(out, p)
		}
	}
	return out, nil
}

// clear removes every owned address and default route from the uplink
// and empties the DNS file. The owned addresses stay (an error) when
// promote_secondaries cannot be set and removing them would take foreign
// addresses with them.
func (u *uplinkLink) clear() error {
	l, err := u.link()
	if err != nil {
		return err
	}
	var errs []error
	if _, err := u.setDefaultRoute(l, netip.Addr{}); err != nil {
		errs = append(errs, err)
	}
	have, err := u.h.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("netconf: list addresses of %s: %w", u.name, err)
	}
	var remove []netlink.Addr
	for _, a := range have {
		if a.Label == OwnerLabel(u.name) {
			remove = append(remove, a)
		}
	}
	if _, perr := promoteSecondaries(u.ns, u.name); perr != nil {
		if err := guardRemovals(perr, u.name, have, remove, OwnerLabel(u.name)); err != nil {
			perr, remove = err, nil
		}
		errs = append(errs, perr)
	}
	for _, a := range remove {
		del := a
		if err := u.h.AddrDel(l, &del); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			errs = append(errs, fmt.Errorf("netconf: remove %s from %s: %w", a.IPNet, u.name, err))
		}
	}
	if err := u.resolver.Write(u.source+", no lease", nil, nil); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// StaticUplink configures the uplink from fixed settings.
type StaticUplink struct {
	// Protected returns the ranges a DNS server of the uplink must not
	// be in (the OT side, as for a lease: DHCPClient.Protected); nil:
	// none. A policy compiled before the site file refused such an
	// uplink.dns, or -uplink-dns, can still name one.
	Protected func() []Protected
	// Logf says which DNS servers are not used, when that changes.
	Logf func(string, ...any)

	link *uplinkLink
	cfg  UplinkConfig

	mu      sync.Mutex
	notUsed []string     // as the last Apply said
	inUse   []netip.Addr // as the last successful Apply wrote
}

// NewStaticUplink returns the static configuration of u through h, whose
// network namespace is ns (zero: the process's own).
func NewStaticUplink(h *netlink.Handle, ns netns.NsHandle, u Uplink, r *Resolver) *StaticUplink {
	if r == nil {
		r = &Resolver{}
	}
	return &StaticUplink{
		link: &uplinkLink{h: h, ns: ns, name: u.Name, proto: unix.RTPROT_STATIC, resolver: r, source: "static on " + u.Name},
		cfg:  UplinkConfig{Address: u.Address, Gateway: u.Gateway, DNS: u.DNS},
	}
}

// Apply converges the uplink to the static settings and reports whether
// the kernel changed (a second Apply changes nothing). DNS servers in a
// Protected range are not used (dnsToUse; logged when that changes);
// when the uplink names servers and none is left, resolv.conf is
// rewritten naming none.
func (s *StaticUplink) Apply() (bool, error) {
	c := s.cfg
	var notUsed []string
	c.DNS, notUsed = s.dnsNow()
	c.rewriteDNS = len(s.cfg.DNS) > 0
	s.mu.Lock()
	said := slices.Equal(s.notUsed, notUsed)
	s.notUsed = notUsed
	s.mu.Unlock()
	if !said && s.Logf != nil {
		for _, n := range notUsed {
			s.Logf("netconf: static uplink %s: %s", s.link.name, n)
		}
	}
	changed, err := s.link.apply(c)
	if err == nil {
		s.mu.Lock()
		s.inUse = c.DNS
		s.mu.Unlock()
	}
	return changed, err
}

// dnsNow splits the uplink's DNS servers by the Protected ranges now.
func (s *StaticUplink) dnsNow() (use []netip.Addr, notUsed []string) {
	var prot []Protected
	if s.Protected != nil {
		prot = s.Protected()
	}
	return dnsToUse(s.cfg.DNS, "the static uplink", nil, prot)
}

// NotUsed says which of the uplink's DNS servers the last Apply left
// out, and why.
func (s *StaticUplink) NotUsed() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.notUsed)
}

// DNSStale reports whether the Protected ranges now leave other DNS
// servers in use than the last Apply wrote (a policy sync added a zone
// around one): Apply again.
func (s *StaticUplink) DNSStale() bool {
	use, _ := s.dnsNow()
	s.mu.Lock()
	defer s.mu.Unlock()
	return !slices.Equal(use, s.inUse)
}

// dropDefaultRoutes removes the default routes on the uplink that netconf
// made in the other mode (protocol static when the uplink now runs DHCP,
// dhcp when it is now static): left by a run before a restart that
// switched the mode, they would be taken for an operator's own route and
// block the new one. Addresses need nothing: both modes label theirs
// alike, and each removes the other owned ones when it applies its own
// (a static uplink keeping the address a DHCP run left makes it
// permanent: it had the lease's lifetime).
func dropDefaultRoutes(h *netlink.Handle, name string, proto netlink.RouteProtocol) (bool, error) {
	u := &uplinkLink{h: h, name: name, proto: proto}
	l, err := u.link()
	if err != nil {
		return false, err
	}
	return u.setDefaultRoute(l, netip.Addr{})
}
