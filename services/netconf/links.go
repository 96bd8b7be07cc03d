package netconf

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Ownership marks.
const (
	// labelSuffix ends the IPv4 label of every address the service adds.
	labelSuffix = ":nc"
	// VLANAlias is the interface alias of the VLAN interfaces it created.
	VLANAlias = "otgate-netconf"
)

// ErrForeign: something the service does not own is in its way.
var ErrForeign = errors.New("not owned by netconf")

// OwnerLabel is the label netconf puts on its addresses on ifname: the
// name (cut to fit IFNAMSIZ) and ":nc".
func OwnerLabel(ifname string) string {
	max := unix.IFNAMSIZ - 1 - len(labelSuffix)
	if len(ifname) > max {
		ifname = ifname[:max]
	}
	return ifname + labelSuffix
}

// Reconciler converges the OT-side interfaces to a Plan through one
// netlink handle in the service's network namespace, ns (where it sets
// the interfaces' promote_secondaries).
type Reconciler struct {
	h  *netlink.Handle
	ns netns.NsHandle
}

// NewReconciler returns a Reconciler using h, whose namespace is ns (zero:
// the process's own).
func NewReconciler(h *netlink.Handle, ns netns.NsHandle) *Reconciler {
	return &Reconciler{h: h, ns: ns}
}

// Change is one thing a Reconcile did.
type Change struct {
	Link string `cbor:"1,keyasint"`
	What string `cbor:"2,keyasint"` // "created", "up", "added 10.0.0.1/24", "removed ...", "deleted"
}

func (c Change) String() string { return c.Link + ": " + c.What }

// Result says what a Reconcile did and what it left alone.
type Result struct {
	Changes []Change
	// Foreign lists addresses on planned interfaces it does not own.
	Foreign []string
}

// Reconcile makes the kernel match p: board downlinks must exist (they
// are never created or deleted) and are brought up; VLAN sub-interfaces
// are created (marked with VLANAlias) and brought up after their parent;
// promote_secondaries is turned on for each (again when found off); owned
// addresses are added or removed to match; VLAN interfaces it
// created that the plan no longer names are deleted. Problems are
// collected; the rest of the plan is still applied.
func (r *Reconciler) Reconcile(p *Plan) (Result, error) {
	var res Result
	var errs []error
	for _, lp := range p.Links {
		l, err := r.ensureLink(lp, &res)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := r.ensureAddrs(l, lp.Name, lp.Addresses, &res); err != nil {
			errs = append(errs, err)
		}
	}
	if err := r.deleteStaleVLANs(p, &res); err != nil {
		errs = append(errs, err)
	}
	return res, errors.Join(errs...)
}

func (r *Reconciler) ensureLink(lp LinkPlan, res *Result) (netlink.Link, error) {
	l, err := r.h.LinkByName(lp.Name)
	var notFound netlink.LinkNotFoundError
	switch {
	case err == nil && lp.VLAN != 0:
		v, ok := l.(*netlink.Vlan)
		parent, perr := r.h.LinkByName(lp.Parent)
		if !ok || perr != nil || v.VlanId != lp.VLAN || v.ParentIndex != parent.Attrs().Index {
			return nil, fmt.Errorf("netconf: %s exists but is not VLAN %d on %s: %w; remove or rename it", lp.Name, lp.VLAN, lp.Parent, ErrForeign)
		}
	case err == nil:
	case errors.As(err, &notFound) && lp.VLAN == 0:
		return nil, fmt.Errorf("netconf: downlink %s: no such interface (check the board's NIC names)", lp.Name)
	case errors.As(err, &notFound):
		parent, err := r.h.LinkByName(lp.Parent)
		if err != nil {
			return nil, fmt.Errorf("netconf: VLAN %d: parent %s: %w", lp.VLAN, lp.Parent, err)
		}
		v := &netlink.Vlan{LinkAttrs: netlink.LinkAttrs{Name: lp.Name, ParentIndex: parent.Attrs().Index}, VlanId: lp.VLAN, VlanProtocol: netlink.VLAN_PROTOCOL_8021Q}
		if err := r.h.LinkAdd(v); err != nil {
			hint := ""
			if errors.Is(err, unix.EOPNOTSUPP) {
				hint = " (the kernel has no 802.1Q support: load the 8021q module)"
			}
			return nil, fmt.Errorf("netconf: create VLAN %d on %s as %s: %w%s", lp.VLAN, lp.Parent, lp.Name, err, hint)
		}
		if l, err = r.h.LinkByName(lp.Name); err != nil {
			return nil, fmt.Errorf("netconf: find created %s: %w", lp.Name, err)
		}
		if err := r.h.LinkSetAlias(l, VLANAlias); err != nil {
			return nil, fmt.Errorf("netconf: mark %s as ours: %w", lp.Name, err)
		}
		res.Changes = append(res.Changes, Change{lp.Name, fmt.Sprintf("created (VLAN %d on %s)", lp.VLAN, lp.Parent)})
	default:
		return nil, fmt.Errorf("netconf: find %s: %w", lp.Name, err)
	}
	if l.Attrs().Flags&net.FlagUp == 0 {
		if err := r.h.LinkSetUp(l); err != nil {
			return nil, fmt.Errorf("netconf: bring up %s: %w", lp.Name, err)
		}
		res.Changes = append(res.Changes, Change{lp.Name, "up"})
	}
	return l, nil
}

// ensureAddrs makes the owned addresses of l exactly want, after turning
// on promote_secondaries there: removing an owned address must not take
// the foreign addresses of its subnet with it. When that cannot be set,
// the error says so and the addresses change only if no foreign one would
// be lost; otherwise none changes.
func (r *Reconciler) ensureAddrs(l netlink.Link, name string, want []netip.Prefix, res *Result) error {
	have, err := r.h.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("netconf: list addresses of %s: %w", name, err)
	}
	label := OwnerLabel(name)
	wanted := map[netip.Prefix]bool{}
	for _, w := range want {
		wanted[w] = true
	}
	owned := map[netip.Prefix]bool{}
	foreign := map[netip.Addr]string{}
	var remove []netlink.Addr
	for _, a := range have {
		p, ok := addrPrefix(a)
		if !ok {
			continue
		}
		if a.Label != label {
			foreign[p.Addr()] = a.Label
			res.Foreign = append(res.Foreign, fmt.Sprintf("%s on %s (label %s)", p, name, a.Label))
			continue
		}
		owned[p] = true
		if !wanted[p] {
			remove = append(remove, a)
		}
	}
	var errs []error
	set, perr := promoteSecondaries(r.ns, name)
	if set {
		res.Changes = append(res.Changes, Change{name, promoteChange})
	}
	if perr != nil {
		if err := guardRemovals(perr, name, have, remove, label); err != nil {
			return err
		}
		errs = append(errs, perr)
	}
	for _, a := range remove {
		p, _ := addrPrefix(a)
		del := a
		if err := r.h.AddrDel(l, &del); err != nil {
			errs = append(errs, fmt.Errorf("netconf: remove %s from %s: %w", p, name, err))
			continue
		}
		res.Changes = append(res.Changes, Change{name, "removed " + p.String()})
	}
	for _, w := range want {
		if owned[w] {
			continue
		}
		if lab, clash := foreign[w.Addr()]; clash {
			errs = append(errs, fmt.Errorf("netconf: %s on %s carries label %q: %w; remove it by hand to let netconf manage it", w.Addr(), name, lab, ErrForeign))
			continue
		}
		ad := &netlink.Addr{IPNet: prefixIPNet(w), Label: label}
		if err := r.h.AddrAdd(l, ad); err != nil {
			errs = append(errs, fmt.Errorf("netconf: add %s to %s: %w", w, name, err))
			continue
		}
		res.Changes = append(res.Changes, Change{name, "added " + w.String()})
	}
	return errors.Join(errs...)
}

// deleteStaleVLANs removes VLAN interfaces marked as netconf's that the
// plan no longer names.
func (r *Reconciler) deleteStaleVLANs(p *Plan, res *Result) error {
	links, err := r.h.LinkList()
	if err != nil {
		return fmt.Errorf("netconf: list interfaces: %w", err)
	}
	sort.Slice(links, func(i, j int) bool { return links[i].Attrs().Name < links[j].Attrs().Name })
	var errs []error
	for _, l := range links {
		if _, ok := l.(*netlink.Vlan); !ok || l.Attrs().Alias != VLANAlias {
			continue
		}
		if _, planned := p.Link(l.Attrs().Name); planned {
			continue
		}
		if err := r.h.LinkDel(l); err != nil {
			errs = append(errs, fmt.Errorf("netconf: delete stale VLAN interface %s: %w", l.Attrs().Name, err))
			continue
		}
		res.Changes = append(res.Changes, Change{l.Attrs().Name, "deleted (no zone names it any more)"})
	}
	return errors.Join(errs...)
}

func addrPrefix(a netlink.Addr) (netip.Prefix, bool) {
	if a.IPNet == nil {
		return netip.Prefix{}, false
	}
	ip, ok := netip.AddrFromSlice(a.IP.To4())
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := a.Mask.Size()
	return netip.PrefixFrom(ip, ones), true
}

func prefixIPNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)}
}
