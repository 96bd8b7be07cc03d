package overlay

import (
	"errors"
	"net"
	"net/netip"
	"sort"
	"testing"

	"github.com/vishvananda/netlink"
)

var prefix = netip.MustParsePrefix("100.64.0.0/16")

func TestReconcileOwnsOnlyItsAddresses(t *testing.T) {
	h := newNetNS(t)
	kind := linkKind(t, h)
	// Someone else's interface, with an address inside the overlay prefix.
	addLink(t, h, kind, "other0", "100.64.0.2/32", "10.1.1.1/24")

	r, err := NewReconciler(h, DefaultLink, kind, prefix)
	if err != nil {
		t.Fatal(err)
	}
	res, err := r.Reconcile(addrs("100.64.0.1", "100.64.0.2", "100.64.0.3"))
	if err != nil {
		t.Fatal(err)
	}
	if !res.Created || len(res.Added) != 3 {
		t.Fatalf("first reconcile: %+v", res)
	}
	l, err := h.LinkByName(DefaultLink)
	if err != nil || l.Type() != string(kind) || l.Attrs().Flags&net.FlagUp == 0 {
		t.Fatalf("overlay link %v (err %v): want an up %s", l, err, kind)
	}
	// Foreign addresses on the overlay link itself: one outside the prefix,
	// one inside it without the overlay's label.
	addAddrs(t, h, DefaultLink, "192.0.2.1/24", "100.64.9.9/32")

	// An edit: .3 goes, .4 comes.
	res, err = r.Reconcile(addrs("100.64.0.1", "100.64.0.2", "100.64.0.4"))
	if err != nil {
		t.Fatal(err)
	}
	if !equal(res.Removed, addrs("100.64.0.3")) || !equal(res.Added, addrs("100.64.0.4")) || len(res.Foreign) != 2 {
		t.Fatalf("edit: %+v", res)
	}
	label := DefaultLink + ":ov"
	want := []labelled{
		{"100.64.0.1/32", label}, {"100.64.0.2/32", label}, {"100.64.0.4/32", label},
		{"100.64.9.9/32", DefaultLink}, {"192.0.2.1/24", DefaultLink},
	}
	if got := addrsOn(t, h, DefaultLink); !equal(got, want) {
		t.Errorf("overlay link carries\n %v\nwant\n %v", got, want)
	}
	if got, want := addrsOn(t, h, "other0"), []labelled{{"10.1.1.1/24", "other0"}, {"100.64.0.2/32", "other0"}}; !equal(got, want) {
		t.Errorf("foreign interface changed: %v, want %v", got, want)
	}

	// Drift (someone deletes an owned address) and a "restart" (a new
	// reconciler on a new handle) converge to the same state.
	l, _ = h.LinkByName(DefaultLink)
	if err := h.AddrDel(l, &netlink.Addr{IPNet: &net.IPNet{IP: net.ParseIP("100.64.0.2").To4(), Mask: net.CIDRMask(32, 32)}}); err != nil {
		t.Fatal(err)
	}
	r2, _ := NewReconciler(h, DefaultLink, kind, prefix)
	res, err = r2.Reconcile(addrs("100.64.0.4", "100.64.0.2", "100.64.0.1"))
	if err != nil || res.Created || !equal(res.Added, addrs("100.64.0.2")) || len(res.Removed) != 0 {
		t.Fatalf("after drift: %+v, %v", res, err)
	}
	res, err = r2.Reconcile(addrs("100.64.0.1", "100.64.0.2", "100.64.0.4"))
	if err != nil || len(res.Added)+len(res.Removed) != 0 {
		t.Fatalf("converged state changed again: %+v %v", res, err)
	}
	if got := addrsOn(t, h, DefaultLink); !equal(got, want) {
		t.Errorf("after restart: %v, want %v", got, want)
	}

	// Emptying the table removes only owned addresses.
	if _, err := r2.Reconcile(nil); err != nil {
		t.Fatal(err)
	}
	if got, want := addrsOn(t, h, DefaultLink), []labelled{{"100.64.9.9/32", DefaultLink}, {"192.0.2.1/24", DefaultLink}}; !equal(got, want) {
		t.Errorf("after emptying: %v, want %v", got, want)
	}
}

func TestReconcileRefusesForeignObstacles(t *testing.T) {
	h := newNetNS(t)
	kind := linkKind(t, h)
	r, _ := NewReconciler(h, DefaultLink, kind, prefix)
	if _, err := r.Reconcile(nil); err != nil {
		t.Fatal(err)
	}
	addAddrs(t, h, DefaultLink, "100.64.5.5/32")
	res, err := r.Reconcile(addrs("100.64.5.5", "100.64.5.6"))
	if !errors.Is(err, ErrForeign) {
		t.Fatalf("foreign address on a wanted one: err = %v", err)
	}
	if !equal(res.Added, addrs("100.64.5.6")) {
		t.Errorf("the rest was not reconciled: %+v", res)
	}
	if got := addrsOn(t, h, DefaultLink); got[0] != (labelled{"100.64.5.5/32", DefaultLink}) {
		t.Errorf("foreign address was taken over: %v", got)
	}

	// An interface of the overlay's name and another kind is not ours.
	h2 := newNetNS(t)
	other := KindVeth
	if kind == KindVeth {
		other = KindDummy
	}
	r2, _ := NewReconciler(h2, DefaultLink, other, prefix)
	addLink(t, h2, kind, DefaultLink)
	if _, err := r2.Reconcile(addrs("100.64.0.2")); !errors.Is(err, ErrForeign) {
		t.Fatalf("%s named %s, reconciler of %s: err = %v", kind, DefaultLink, other, err)
	}
	if got := addrsOn(t, h2, DefaultLink); len(got) != 0 {
		t.Errorf("a foreign interface was given addresses: %v", got)
	}

	if _, err := NewReconciler(h, "a-very-long-nm", "", prefix); err == nil {
		t.Error("a link name too long for its label was accepted")
	}
}

// TestReconcilePrefixChangeRemovesOldAddresses: after the overlay prefix
// changes (allowed once no asset uses the old one), the reconciler of the
// new prefix removes the /32s it labelled in the old one. They used to
// count as foreign for being outside the new prefix and stayed on the
// link for good (the old gate address and, after a state reset, every
// old endpoint), still answering.
func TestReconcilePrefixChangeRemovesOldAddresses(t *testing.T) {
	h := newNetNS(t)
	kind := linkKind(t, h)
	r, _ := NewReconciler(h, DefaultLink, kind, prefix)
	if _, err := r.Reconcile(addrs("100.64.0.1", "100.64.0.2")); err != nil {
		t.Fatal(err)
	}
	addAddrs(t, h, DefaultLink, "100.64.9.9/32") // an operator's, unlabelled

	r2, _ := NewReconciler(h, DefaultLink, kind, netip.MustParsePrefix("198.18.0.0/16"))
	res, err := r2.Reconcile(addrs("198.18.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(res.Removed, func(i, j int) bool { return res.Removed[i].Less(res.Removed[j]) })
	if !equal(res.Removed, addrs("100.64.0.1", "100.64.0.2")) {
		t.Errorf("removed %v, want the old prefix's owned 100.64.0.1 and 100.64.0.2", res.Removed)
	}
	want := []labelled{{"100.64.9.9/32", DefaultLink}, {"198.18.0.1/32", DefaultLink + ":ov"}}
	if got := addrsOn(t, h, DefaultLink); !equal(got, want) {
		t.Errorf("after the prefix change the link carries %v, want %v", got, want)
	}
}
