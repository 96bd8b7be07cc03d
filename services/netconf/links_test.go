package netconf

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/otgate/otgate/services/netconf/internal/lab"
	"github.com/otgate/otgate/site"
)

func linkAddrs(t *testing.T, h *netlink.Handle, name string) []string {
	t.Helper()
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	as, err := h.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range as {
		out = append(out, a.IPNet.String()+" "+a.Label)
	}
	sort.Strings(out)
	return out
}

func isUp(t *testing.T, h *netlink.Handle, name string) bool {
	t.Helper()
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return l.Attrs().RawFlags&unix.IFF_UP != 0
}

// TestReconcileDownlinks: the downlinks come up with the gate's
// addresses; a second reconcile changes nothing; a foreign address is
// left alone; a changed plan swaps only owned addresses; a downlink the
// board names but the machine lacks is a clear error.
func TestReconcileDownlinks(t *testing.T) {
	lab.NeedRoot(t)
	gate, plant := lab.NewNS(t, "gate"), lab.NewNS(t, "plant")
	lab.Veth(t, gate, "eth1", plant, "p1")
	lab.Veth(t, gate, "eth2", plant, "p2")
	lab.Run(t, "ip", "-n", gate.Name, "addr", "add", "192.0.2.7/24", "dev", "eth1") // foreign
	promoteOff(t, gate, "eth1")
	promoteOff(t, gate, "eth2")

	zones := []site.Zone{
		{Name: "cell-1", Interface: "eth1", Subnet: netip.MustParsePrefix("10.77.0.0/24")},
		{Name: "cell-2", Interface: "eth2", Subnet: netip.MustParsePrefix("10.78.0.0/24")},
	}
	addrs := Addresses{"eth1": {netip.MustParsePrefix("10.77.0.1/24")}, "eth2": {netip.MustParsePrefix("10.78.0.1/24")}}
	plan, err := MakePlan("eth0", []string{"eth1", "eth2"}, addrs, zones)
	if err != nil {
		t.Fatal(err)
	}
	r := NewReconciler(gate.Handle, gate.NS)
	res, err := r.Reconcile(plan)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range res.Changes {
		got = append(got, c.String())
	}
	want := []string{"eth1: up", "eth1: promote_secondaries set to 1", "eth1: added 10.77.0.1/24", "eth2: up", "eth2: promote_secondaries set to 1", "eth2: added 10.78.0.1/24"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("first reconcile: %q, want %q", got, want)
	}
	if len(res.Foreign) != 1 || !strings.Contains(res.Foreign[0], "192.0.2.7/24") {
		t.Errorf("foreign: %q", res.Foreign)
	}
	if a := linkAddrs(t, gate.Handle, "eth1"); !reflect.DeepEqual(a, []string{"10.77.0.1/24 eth1:nc", "192.0.2.7/24 eth1"}) {
		t.Errorf("eth1 addresses %q", a)
	}
	if !isUp(t, gate.Handle, "eth1") || !isUp(t, gate.Handle, "eth2") {
		t.Error("downlinks not up")
	}

	res, err = r.Reconcile(plan)
	if err != nil || len(res.Changes) != 0 {
		t.Errorf("second reconcile changed %v (err %v), want nothing", res.Changes, err)
	}

	// A new gate address for cell-1 replaces the owned one only.
	zones[0].Subnet = netip.MustParsePrefix("10.77.1.0/24")
	addrs["eth1"] = []netip.Prefix{netip.MustParsePrefix("10.77.1.1/24")}
	plan, err = MakePlan("eth0", []string{"eth1", "eth2"}, addrs, zones)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Reconcile(plan); err != nil {
		t.Fatal(err)
	}
	if a := linkAddrs(t, gate.Handle, "eth1"); !reflect.DeepEqual(a, []string{"10.77.1.1/24 eth1:nc", "192.0.2.7/24 eth1"}) {
		t.Errorf("eth1 after the change %q", a)
	}

	// Drift: an owned address removed by hand comes back.
	lab.Run(t, "ip", "-n", gate.Name, "addr", "del", "10.78.0.1/24", "dev", "eth2")
	res, err = r.Reconcile(plan)
	if err != nil || len(res.Changes) != 1 || res.Changes[0].String() != "eth2: added 10.78.0.1/24" {
		t.Errorf("drift repair: %v %v", res.Changes, err)
	}

	// A foreign address sitting on the wanted one is an error naming it
	// and is left alone.
	lab.Run(t, "ip", "-n", gate.Name, "addr", "del", "10.78.0.1/24", "dev", "eth2")
	lab.Run(t, "ip", "-n", gate.Name, "addr", "add", "10.78.0.1/24", "dev", "eth2") // foreign, on the wanted address
	_, err = r.Reconcile(plan)
	if !errors.Is(err, ErrForeign) || !strings.Contains(err.Error(), "10.78.0.1 on eth2") {
		t.Errorf("foreign address on the wanted one: err %v, want ErrForeign naming 10.78.0.1 on eth2", err)
	}
	if a := linkAddrs(t, gate.Handle, "eth2"); !reflect.DeepEqual(a, []string{"10.78.0.1/24 eth2"}) {
		t.Errorf("eth2 addresses %q, want the foreign one untouched", a)
	}

	// The board names eth9, which this machine lacks.
	plan, err = MakePlan("eth0", []string{"eth1", "eth9"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Reconcile(plan); err == nil || !strings.Contains(err.Error(), "downlink eth9: no such interface") {
		t.Errorf("missing downlink: %v", err)
	}
}

// TestReconcileVLAN creates a VLAN sub-interface per zone; on a kernel
// without 802.1Q it checks the error is clear and skips the rest.
func TestReconcileVLAN(t *testing.T) {
	lab.NeedRoot(t)
	gate, plant := lab.NewNS(t, "gate"), lab.NewNS(t, "plant")
	lab.Veth(t, gate, "eth1", plant, "p1")
	zones := []site.Zone{
		{Name: "cell-1", Interface: "eth1", VLAN: 100, Subnet: netip.MustParsePrefix("10.77.0.0/24")},
		{Name: "cell-2", Interface: "eth1", VLAN: 200, Subnet: netip.MustParsePrefix("10.78.0.0/24")},
	}
	addrs := Addresses{"eth1.100": {netip.MustParsePrefix("10.77.0.1/24")}, "eth1.200": {netip.MustParsePrefix("10.78.0.1/24")}}
	plan, err := MakePlan("eth0", []string{"eth1"}, addrs, zones)
	if err != nil {
		t.Fatal(err)
	}
	r := NewReconciler(gate.Handle, gate.NS)
	res, err := r.Reconcile(plan)
	if err != nil && errors.Is(err, unix.EOPNOTSUPP) {
		if !strings.Contains(err.Error(), "create VLAN 100 on eth1 as eth1.100") || !strings.Contains(err.Error(), "8021q") {
			t.Errorf("error does not say what failed: %v", err)
		}
		if !isUp(t, gate.Handle, "eth1") {
			t.Error("the parent should still be up")
		}
		t.Skipf("this kernel has no 802.1Q support (modprobe 8021q; CI's kernel needs CONFIG_VLAN_8021Q): %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("changes: %v", res.Changes)
	for _, n := range []string{"eth1.100", "eth1.200"} {
		l, err := gate.Handle.LinkByName(n)
		if err != nil {
			t.Fatal(err)
		}
		if v := promoteValue(t, gate, n); v != "1" {
			t.Errorf("%s: promote_secondaries %s, want 1", n, v)
		}
		if v, ok := l.(*netlink.Vlan); !ok || l.Attrs().Alias != VLANAlias || !isUp(t, gate.Handle, n) {
			t.Errorf("%s: %T alias %q", n, l, l.Attrs().Alias)
		} else if want := map[string]int{"eth1.100": 100, "eth1.200": 200}[n]; v.VlanId != want {
			t.Errorf("%s: VLAN id %d, want %d", n, v.VlanId, want)
		}
	}
	if res, err := r.Reconcile(plan); err != nil || len(res.Changes) != 0 {
		t.Errorf("second reconcile: %v %v", res.Changes, err)
	}
	// cell-2 leaves: its VLAN interface goes, cell-1's stays.
	plan, err = MakePlan("eth0", []string{"eth1"}, Addresses{"eth1.100": addrs["eth1.100"]}, zones[:1])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Reconcile(plan); err != nil {
		t.Fatal(err)
	}
	if _, err := gate.Handle.LinkByName("eth1.200"); err == nil {
		t.Error("eth1.200 should be deleted")
	}
	if a := linkAddrs(t, gate.Handle, "eth1.100"); !reflect.DeepEqual(a, []string{"10.77.0.1/24 eth1.100:nc"}) {
		t.Errorf("eth1.100 addresses %q", a)
	}
}

// TestStaticUplink sets address, default route and DNS; a second apply
// changes nothing; a foreign address stays.
func TestStaticUplink(t *testing.T) {
	lab.NeedRoot(t)
	gate, up := lab.NewNS(t, "gate"), lab.NewNS(t, "upstream")
	lab.Veth(t, gate, "eth0", up, "u0")
	lab.Run(t, "ip", "-n", gate.Name, "addr", "add", "192.0.2.9/24", "dev", "eth0")
	u, err := ParseStaticUplink("eth0", "10.50.0.2/24", "10.50.0.1", "10.50.0.53, 10.50.0.54")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	res := &Resolver{Path: filepath.Join(dir, "run", "resolv.conf"), Etc: filepath.Join(dir, "etc-resolv.conf")}
	s := NewStaticUplink(gate.Handle, gate.NS, u, res)
	changed, err := s.Apply()
	if err != nil || !changed {
		t.Fatalf("apply: changed %v, %v", changed, err)
	}
	if a := linkAddrs(t, gate.Handle, "eth0"); !reflect.DeepEqual(a, []string{"10.50.0.2/24 eth0:nc", "192.0.2.9/24 eth0"}) {
		t.Errorf("eth0 addresses %q", a)
	}
	routes := lab.Run(t, "ip", "-n", gate.Name, "route", "show", "default")
	if !strings.Contains(routes, "default via 10.50.0.1 dev eth0 proto static") {
		t.Errorf("routes: %s", routes)
	}
	for _, p := range []string{res.Path, res.Etc} {
		b, err := os.ReadFile(p)
		if err != nil || !strings.Contains(string(b), "nameserver 10.50.0.53\nnameserver 10.50.0.54\n") {
			t.Errorf("%s: %q %v", p, b, err)
		}
	}
	if changed, err := s.Apply(); err != nil || changed {
		t.Errorf("second apply: changed %v, %v", changed, err)
	}
}

func TestParseStaticUplinkErrors(t *testing.T) {
	for _, c := range []struct{ addr, gw, dns, want string }{
		{"10.50.0.2", "", "", "bad address"},
		{"10.50.0.0/24", "", "", "network or broadcast"},
		{"10.50.0.2/24", "10.51.0.1", "", "not another address of the uplink subnet"},
		{"10.50.0.2/24", "10.50.0.2", "", "not another address"},
		{"10.50.0.2/24", "", "x", `DNS server "x"`},
		{"fd00::1/64", "", "", "not IPv4"},
	} {
		_, err := ParseStaticUplink("eth0", c.addr, c.gw, c.dns)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q %q %q: %v, want %q", c.addr, c.gw, c.dns, err, c.want)
		}
	}
}

// TestStaticUplinkMakesALeasedAddressPermanent: a DHCP run that died
// leaves its address on the uplink with the lease's lifetime; when the
// next run is static (the mode changed at that restart) with the same
// address, the address must become permanent, not expire with the old
// lease and take the uplink (and its default route) with it.
func TestStaticUplinkMakesALeasedAddressPermanent(t *testing.T) {
	lab.NeedRoot(t)
	gate, up := lab.NewNS(t, "gate"), lab.NewNS(t, "upstream")
	lab.Veth(t, gate, "eth0", up, "u0")
	lab.Run(t, "ip", "-n", gate.Name, "link", "set", "eth0", "up")
	// What a dead DHCP run leaves: its label, the lease's lifetime.
	lab.Run(t, "ip", "-n", gate.Name, "addr", "add", "10.50.0.2/24", "dev", "eth0", "label", OwnerLabel("eth0"), "valid_lft", "3", "preferred_lft", "3")
	u, err := ParseStaticUplink("eth0", "10.50.0.2/24", "10.50.0.1", "")
	if err != nil {
		t.Fatal(err)
	}
	s := NewStaticUplink(gate.Handle, gate.NS, u, &Resolver{Path: filepath.Join(t.TempDir(), "resolv.conf")})
	if _, err := s.Apply(); err != nil {
		t.Fatalf("apply: %v", err)
	}
	l, err := gate.Handle.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	as, err := gate.Handle.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, a := range as {
		if a.IPNet.String() == "10.50.0.2/24" {
			found = true
			if a.ValidLft != 0xffffffff || a.PreferedLft != 0xffffffff {
				t.Errorf("static 10.50.0.2/24 has lifetimes valid %d s, preferred %d s: it expires with the dead run's lease (want forever)", a.ValidLft, a.PreferedLft)
			}
		}
	}
	if !found {
		t.Fatalf("10.50.0.2/24 not on eth0: %q", linkAddrs(t, gate.Handle, "eth0"))
	}
	// A second apply changes nothing.
	if changed, err := s.Apply(); err != nil || changed {
		t.Errorf("second apply: changed %v, %v", changed, err)
	}
}

// TestStaticUplinkForeignClashChangesNothing: a static address that a
// foreign address (not netconf's label) already holds is refused with
// ErrForeign, and nothing changes: the address netconf had on the uplink
// stays (it was removed before the clash was found, and the uplink was
// left with no address of netconf's at all).
func TestStaticUplinkForeignClashChangesNothing(t *testing.T) {
	lab.NeedRoot(t)
	gate, up := lab.NewNS(t, "gate"), lab.NewNS(t, "upstream")
	lab.Veth(t, gate, "eth0", up, "u0")
	lab.Run(t, "ip", "-n", gate.Name, "link", "set", "eth0", "up")
	lab.Run(t, "ip", "-n", gate.Name, "addr", "add", "10.50.0.9/24", "dev", "eth0", "label", OwnerLabel("eth0"))
	lab.Run(t, "ip", "-n", gate.Name, "addr", "add", "10.50.0.2/24", "dev", "eth0") // foreign
	before := linkAddrs(t, gate.Handle, "eth0")
	u, err := ParseStaticUplink("eth0", "10.50.0.2/24", "", "")
	if err != nil {
		t.Fatal(err)
	}
	s := NewStaticUplink(gate.Handle, gate.NS, u, &Resolver{Path: filepath.Join(t.TempDir(), "resolv.conf")})
	changed, err := s.Apply()
	if !errors.Is(err, ErrForeign) {
		t.Errorf("apply: %v, want ErrForeign", err)
	}
	if a := linkAddrs(t, gate.Handle, "eth0"); changed || !reflect.DeepEqual(a, before) {
		t.Errorf("a refused apply changed the uplink (changed %v): %q, was %q", changed, a, before)
	}
}
