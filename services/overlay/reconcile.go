// Package overlay is the overlay service: it reads the applied policy,
// gives every asset a stable overlay address (package alloc), makes the
// overlay interface carry exactly those addresses (Reconciler), and
// serves the allocation table on a unix socket in CBOR (Service).
//
// otgate-overlay (overlayd) confines itself with Landlock right after
// dropping to CAP_NET_ADMIN, and refuses to run when it cannot: it reads
// the policy's directory and /etc/localtime, and writes its state
// directory (created 0700 first) and the socket's directory
// (/run/otgate/overlay, its own). Netlink needs no
// file. It logs "overlay: files confined: ..."; overlayd's
// TestConfinement runs its file operations confined.
package overlay

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// DefaultLink is the overlay interface's name.
const DefaultLink = "otg-overlay"

// labelSuffix marks the addresses the reconciler owns: their IPv4 label
// is "<link>:ov". Addresses added by anyone else carry another label
// (by default the interface name) and are never touched.
const labelSuffix = ":ov"

// ErrForeign: something the reconciler does not own is in its way.
var ErrForeign = errors.New("not owned by the overlay service")

// LinkKind is the kind of interface the overlay addresses live on.
type LinkKind string

// Link kinds.
const (
	// KindDummy is the normal overlay interface (kernel module "dummy").
	KindDummy LinkKind = "dummy"
	// KindVeth is a veth pair (the peer is named <link>-p), for kernels
	// built without dummy interfaces.
	KindVeth LinkKind = "veth"
	// kindIfb stands in for dummy in tests on kernels without the dummy
	// module: like a dummy it is one interface made by name alone, with
	// no peer whose name can be in the way, so creating it beside a
	// renamed one succeeds as a dummy's would. Not a kind NewReconciler
	// accepts: only tests set it (Service.standIn).
	kindIfb LinkKind = "ifb"
)

// Reconciler makes one interface carry exactly a set of /32s.
type Reconciler struct {
	h      *netlink.Handle
	link   string
	kind   LinkKind
	prefix netip.Prefix
}

// NewReconciler manages link (created as kind if missing; empty kind:
// dummy) through h; it owns only the /32s carrying its label on that
// link, and adds only addresses inside prefix.
func NewReconciler(h *netlink.Handle, link string, kind LinkKind, prefix netip.Prefix) (*Reconciler, error) {
	if kind == "" {
		kind = KindDummy
	}
	if kind != KindDummy && kind != KindVeth {
		return nil, fmt.Errorf("overlay: unknown link kind %q (want %s or %s)", kind, KindDummy, KindVeth)
	}
	if len(link) == 0 || len(link)+len(labelSuffix) > unix.IFNAMSIZ-1 {
		return nil, fmt.Errorf("overlay: interface name %q: want 1 to %d characters (its address label %q must fit in %d)", link, unix.IFNAMSIZ-1-len(labelSuffix), link+labelSuffix, unix.IFNAMSIZ-1)
	}
	if !prefix.Addr().Is4() {
		return nil, fmt.Errorf("overlay: prefix %s is not IPv4", prefix)
	}
	return &Reconciler{h: h, link: link, kind: kind, prefix: prefix.Masked()}, nil
}

// Label is the label the reconciler puts on its addresses.
func (r *Reconciler) Label() string { return r.link + labelSuffix }

// Result says what a Reconcile did.
type Result struct {
	Created bool         // the interface was created
	Up      bool         // the interface was down and was brought up
	Index   int          // the interface's index (0: not found or made)
	Added   []netip.Addr // owned addresses added
	Removed []netip.Addr // owned addresses no longer wanted, removed
	Foreign []netip.Addr // addresses on the interface it left alone
}

// ensureLink finds or creates the interface and brings it up; it says
// whether it created it and whether it brought it up.
func (r *Reconciler) ensureLink() (l netlink.Link, created, up bool, err error) {
	l, err = r.h.LinkByName(r.link)
	var notFound netlink.LinkNotFoundError
	switch {
	case errors.As(err, &notFound):
		var nl netlink.Link = &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: r.link}}
		switch r.kind {
		case KindVeth:
			nl = &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: r.link}, PeerName: r.link + "-p"}
		case kindIfb:
			nl = &netlink.Ifb{LinkAttrs: netlink.LinkAttrs{Name: r.link}}
		}
		if err := r.h.LinkAdd(nl); err != nil {
			hint := ""
			if errors.Is(err, unix.EOPNOTSUPP) {
				hint = fmt.Sprintf(" (is the kernel module %q loaded?)", r.kind)
			}
			return nil, false, false, fmt.Errorf("overlay: create %s interface %s: %w%s", r.kind, r.link, err, hint)
		}
		if r.kind == KindVeth {
			if peer, err := r.h.LinkByName(r.link + "-p"); err == nil {
				if err := r.h.LinkSetUp(peer); err != nil {
					return nil, false, false, fmt.Errorf("overlay: bring up %s-p: %w", r.link, err)
				}
			}
		}
		if l, err = r.h.LinkByName(r.link); err != nil {
			return nil, false, false, fmt.Errorf("overlay: find created interface %s: %w", r.link, err)
		}
		created = true
	case err != nil:
		return nil, false, false, fmt.Errorf("overlay: find interface %s: %w", r.link, err)
	case l.Type() != string(r.kind):
		return nil, false, false, fmt.Errorf("overlay: interface %s exists and is a %s, not a %s: %w; refusing to touch it", r.link, l.Type(), r.kind, ErrForeign)
	}
	if l.Attrs().Flags&net.FlagUp == 0 {
		if err := r.h.LinkSetUp(l); err != nil {
			return nil, created, false, fmt.Errorf("overlay: bring up %s: %w", r.link, err)
		}
		up = true
	}
	return l, created, up, nil
}

// Reconcile makes the interface carry exactly want (owned /32s): it adds
// what is missing and removes owned addresses that are not wanted. It
// never touches an address it does not own; a foreign address sitting on
// a wanted one is an error (ErrForeign), the rest is still reconciled.
func (r *Reconciler) Reconcile(want []netip.Addr) (Result, error) {
	var res Result
	l, created, up, err := r.ensureLink()
	if err != nil {
		return res, err
	}
	res.Created, res.Up, res.Index = created, up, l.Attrs().Index
	wantSet := make(map[netip.Addr]bool, len(want))
	for _, a := range want {
		if !r.prefix.Contains(a) {
			return res, fmt.Errorf("overlay: address %s is outside the overlay prefix %s", a, r.prefix)
		}
		wantSet[a] = true
	}
	have, err := r.h.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		return res, fmt.Errorf("overlay: list addresses of %s: %w", r.link, err)
	}
	owned := map[netip.Addr]bool{}
	type foreignAddr struct {
		label string
		bits  int
	}
	foreign := map[netip.Addr]foreignAddr{}
	var errs []error
	for _, ad := range have {
		a, ok := netip.AddrFromSlice(ad.IP.To4())
		ones, _ := ad.Mask.Size()
		if !ok {
			continue
		}
		// Owned: a /32 with the overlay's label, inside the current prefix
		// or not (after a prefix change the old addresses are stale, and
		// still the overlay's to remove).
		if ad.Label != r.Label() || ones != 32 {
			foreign[a] = foreignAddr{ad.Label, ones}
			res.Foreign = append(res.Foreign, a)
			continue
		}
		owned[a] = true
		if wantSet[a] {
			continue
		}
		del := ad
		if err := r.h.AddrDel(l, &del); err != nil {
			errs = append(errs, fmt.Errorf("overlay: remove %s from %s: %w", a, r.link, err))
			continue
		}
		res.Removed = append(res.Removed, a)
	}
	sorted := append([]netip.Addr(nil), want...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Less(sorted[j]) })
	for _, a := range sorted {
		if owned[a] {
			continue
		}
		if f, clash := foreign[a]; clash {
			why := ""
			if f.label == r.link {
				// Not repaired: the kernel's label after a rename back and
				// `ip addr add` without a label look the same, and an
				// address added by hand is never the overlay's to take.
				why = " (the kernel gives that label to the first address of an interface renamed and renamed back; `ip addr add` without a label gives it too)"
			}
			errs = append(errs, fmt.Errorf("overlay: %s/%d on %s carries label %q, not %q%s: %w; remove it to let the overlay use it: ip addr del %s/%d dev %s (the overlay puts it back with its own label at once)",
				a, f.bits, r.link, f.label, r.Label(), why, ErrForeign, a, f.bits, r.link))
			continue
		}
		ad := &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(32, 32)}, Label: r.Label()}
		if err := r.h.AddrAdd(l, ad); err != nil {
			errs = append(errs, fmt.Errorf("overlay: add %s/32 to %s: %w", a, r.link, err))
			continue
		}
		res.Added = append(res.Added, a)
	}
	return res, errors.Join(errs...)
}
