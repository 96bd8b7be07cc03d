package overlay

import (
	"errors"
	"net/netip"
	"os"
	"runtime"
	"sort"
	"sync"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// namespaces maps each handle newNetNS made to its namespace (for the
// service's event sockets).
var namespaces sync.Map // *netlink.Handle -> netns.NsHandle

// nsOf is the namespace of a handle made by newNetNS.
func nsOf(t *testing.T, h *netlink.Handle) netns.NsHandle {
	t.Helper()
	ns, ok := namespaces.Load(h)
	if !ok {
		t.Fatal("handle not made by newNetNS")
	}
	return ns.(netns.NsHandle)
}

// newNetNS creates a private network namespace for one test and returns
// a netlink handle inside it. The namespace dies when the test ends.
func newNetNS(t *testing.T) *netlink.Handle {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace")
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	ns, err := netns.New()
	if err != nil {
		t.Fatalf("new network namespace: %v", err)
	}
	if err := netns.Set(orig); err != nil {
		t.Fatalf("back to the original namespace: %v", err)
	}
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE) // as the service opens it
	if err != nil {
		ns.Close()
		t.Fatal(err)
	}
	namespaces.Store(h, ns)
	t.Cleanup(func() {
		namespaces.Delete(h)
		h.Close()
		ns.Close()
	})
	return h
}

type labelled struct {
	addr  string // a.b.c.d/len
	label string
}

// addrsOn lists the IPv4 addresses of link with their labels, sorted.
func addrsOn(t *testing.T, h *netlink.Handle, link string) []labelled {
	t.Helper()
	l, err := h.LinkByName(link)
	if err != nil {
		t.Fatal(err)
	}
	as, err := h.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	var out []labelled
	for _, a := range as {
		out = append(out, labelled{a.IPNet.String(), a.Label})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].addr < out[j].addr })
	return out
}

// linkKind is the interface kind this kernel supports for the overlay:
// dummy where the kernel has it, else a veth pair (some CI kernels are
// built without dummy interfaces).
func linkKind(t *testing.T, h *netlink.Handle) LinkKind {
	t.Helper()
	err := h.LinkAdd(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: "probe0"}})
	if err == nil {
		l, _ := h.LinkByName("probe0")
		if err := h.LinkDel(l); err != nil {
			t.Fatal(err)
		}
		return KindDummy
	}
	if errors.Is(err, unix.EOPNOTSUPP) {
		t.Logf("this kernel has no dummy interfaces; testing with veth pairs")
		return KindVeth
	}
	t.Fatalf("probe dummy interface: %v", err)
	return ""
}

// addLink adds a foreign interface of kind with addresses.
func addLink(t *testing.T, h *netlink.Handle, kind LinkKind, name string, addrs ...string) {
	t.Helper()
	var l netlink.Link = &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: name}}
	if kind == KindVeth {
		l = &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: name + "p"}
	}
	if err := h.LinkAdd(l); err != nil {
		t.Fatal(err)
	}
	addAddrs(t, h, name, addrs...)
}

func addAddrs(t *testing.T, h *netlink.Handle, name string, addrs ...string) {
	t.Helper()
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		ad, err := netlink.ParseAddr(a)
		if err != nil {
			t.Fatal(err)
		}
		if err := h.AddrAdd(l, ad); err != nil {
			t.Fatalf("add %s to %s: %v", a, name, err)
		}
	}
}

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

func equal[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
