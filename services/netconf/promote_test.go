package netconf

import (
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/otgate/otgate/services/netconf/internal/lab"
	"github.com/otgate/otgate/site"
)

// promoteOff turns promote_secondaries off for ifname and "all" in ns (a
// host's sysctl.d may have turned "all" on; a new namespace starts with
// the kernel's default, off): the kernel then deletes the secondaries of
// a primary address that is removed.
func promoteOff(t *testing.T, ns *lab.NS, ifname string) {
	t.Helper()
	ns.Run(t, "sh", "-c", "echo 0 > /proc/sys/net/ipv4/conf/all/promote_secondaries && echo 0 > /proc/sys/net/ipv4/conf/"+ifname+"/promote_secondaries")
}

func promoteValue(t *testing.T, ns *lab.NS, ifname string) string {
	t.Helper()
	return strings.TrimSpace(ns.Run(t, "cat", "/proc/sys/net/ipv4/conf/"+ifname+"/promote_secondaries"))
}

// TestMovedGateAddressKeepsForeignSecondaries: a zone's gate address moves
// within its subnet (10.81.0.1 -> 10.81.0.2); removing the old one, the
// primary address of the subnet, must not take with it the address an
// operator added by hand in the same subnet (a secondary), which netconf
// leaves alone. The kernel deletes it unless promote_secondaries is on.
func TestMovedGateAddressKeepsForeignSecondaries(t *testing.T) {
	lab.NeedRoot(t)
	gate, plant := lab.NewNS(t, "gate"), lab.NewNS(t, "plant")
	lab.Veth(t, gate, "eth1", plant, "p1")
	promoteOff(t, gate, "eth1")

	zones := []site.Zone{gateZone("cell-1", "eth1", 0, "10.81.0.0/24", "10.81.0.1")}
	plan, err := MakePlan("eth0", []string{"eth1"}, nil, zones)
	if err != nil {
		t.Fatal(err)
	}
	r := NewReconciler(gate.Handle, gate.NS)
	if _, err := r.Reconcile(plan); err != nil {
		t.Fatal(err)
	}
	lab.Run(t, "ip", "-n", gate.Name, "addr", "add", "10.81.0.9/24", "dev", "eth1") // by hand: a secondary of 10.81.0.1
	if a := linkAddrs(t, gate.Handle, "eth1"); !slices.Equal(a, []string{"10.81.0.1/24 eth1:nc", "10.81.0.9/24 eth1"}) {
		t.Fatalf("eth1 before the move: %q", a)
	}

	zones[0].GateAddress = netip.MustParseAddr("10.81.0.2")
	plan, err = MakePlan("eth0", []string{"eth1"}, nil, zones)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Reconcile(plan); err != nil {
		t.Fatal(err)
	}
	if a := linkAddrs(t, gate.Handle, "eth1"); !slices.Equal(a, []string{"10.81.0.2/24 eth1:nc", "10.81.0.9/24 eth1"}) {
		t.Errorf("eth1 after the gate address moved: %q, want the hand-added 10.81.0.9/24 still there beside 10.81.0.2/24", a)
	}
	if v := promoteValue(t, gate, "eth1"); v != "1" {
		t.Errorf("promote_secondaries on eth1 is %s, want 1", v)
	}
}

// TestStaticUplinkMoveKeepsForeignSecondaries: the same on the uplink: its
// static address changes within the subnet at a restart, and the address
// an operator added by hand in that subnet stays.
func TestStaticUplinkMoveKeepsForeignSecondaries(t *testing.T) {
	lab.NeedRoot(t)
	gate, up := lab.NewNS(t, "gate"), lab.NewNS(t, "upstream")
	lab.Veth(t, gate, "eth0", up, "u0")
	promoteOff(t, gate, "eth0")
	resolver := &Resolver{Path: filepath.Join(t.TempDir(), "resolv.conf")}
	apply := func(addr string) {
		t.Helper()
		u, err := ParseStaticUplink("eth0", addr, "10.51.0.1", "")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := NewStaticUplink(gate.Handle, gate.NS, u, resolver).Apply(); err != nil {
			t.Fatalf("apply %s: %v", addr, err)
		}
	}
	apply("10.51.0.2/24")
	lab.Run(t, "ip", "-n", gate.Name, "addr", "add", "10.51.0.9/24", "dev", "eth0") // by hand: a secondary
	apply("10.51.0.3/24")
	if a := linkAddrs(t, gate.Handle, "eth0"); !slices.Equal(a, []string{"10.51.0.3/24 eth0:nc", "10.51.0.9/24 eth0"}) {
		t.Errorf("eth0 after the static address changed: %q, want the hand-added 10.51.0.9/24 still there beside 10.51.0.3/24", a)
	}
}

// TestPromoteSecondariesDrift: promote_secondaries turned off by hand on a
// downlink is turned on again at the next reconcile (drift repair, like
// an owned address removed by hand), and said.
func TestPromoteSecondariesDrift(t *testing.T) {
	lab.NeedRoot(t)
	gate, plant := lab.NewNS(t, "gate"), lab.NewNS(t, "plant")
	lab.Veth(t, gate, "eth1", plant, "p1")
	plan, err := MakePlan("eth0", []string{"eth1"}, nil, []site.Zone{gateZone("cell-1", "eth1", 0, "10.82.0.0/24", "10.82.0.1")})
	if err != nil {
		t.Fatal(err)
	}
	r := NewReconciler(gate.Handle, gate.NS)
	if _, err := r.Reconcile(plan); err != nil {
		t.Fatal(err)
	}
	promoteOff(t, gate, "eth1")
	res, err := r.Reconcile(plan)
	if err != nil || len(res.Changes) != 1 || res.Changes[0].String() != "eth1: promote_secondaries set to 1" {
		t.Errorf("reconcile after promote_secondaries was turned off: %v %v", res.Changes, err)
	}
	if v := promoteValue(t, gate, "eth1"); v != "1" {
		t.Errorf("promote_secondaries on eth1 is %s, want 1", v)
	}
	if res, err := r.Reconcile(plan); err != nil || len(res.Changes) != 0 {
		t.Errorf("third reconcile: %v %v, want nothing", res.Changes, err)
	}
}

// TestPromoteSecondariesUnsettable: when promote_secondaries cannot be
// set, the error names the interface and the path; a change that would
// have the kernel delete a foreign address is refused and changes no
// address of that interface; one that would not goes ahead.
func TestPromoteSecondariesUnsettable(t *testing.T) {
	lab.NeedRoot(t)
	gate, plant := lab.NewNS(t, "gate"), lab.NewNS(t, "plant")
	lab.Veth(t, gate, "eth1", plant, "p1")
	lab.Veth(t, gate, "eth0", plant, "u0")
	promoteOff(t, gate, "eth1")
	promoteOff(t, gate, "eth0")
	old := procSysNet
	procSysNet = filepath.Join(t.TempDir(), "no-sysctl")
	t.Cleanup(func() { procSysNet = old })
	path := filepath.Join(procSysNet, "ipv4/conf/eth1/promote_secondaries")

	// Downlink. Nothing to remove: the address is added, the error said.
	zones := []site.Zone{gateZone("cell-1", "eth1", 0, "10.83.0.0/24", "10.83.0.1")}
	plan, err := MakePlan("eth0", []string{"eth1"}, nil, zones)
	if err != nil {
		t.Fatal(err)
	}
	r := NewReconciler(gate.Handle, gate.NS)
	_, err = r.Reconcile(plan)
	if err == nil || !strings.Contains(err.Error(), "eth1: cannot turn on promote_secondaries ("+path+")") {
		t.Errorf("first reconcile: %v, want the error naming eth1 and %s", err, path)
	}
	if a := linkAddrs(t, gate.Handle, "eth1"); !slices.Equal(a, []string{"10.83.0.1/24 eth1:nc"}) {
		t.Errorf("eth1 %q, want the gate address added", a)
	}
	// The gate address moves with a hand-added secondary in its subnet:
	// refused, nothing of eth1 changes.
	lab.Run(t, "ip", "-n", gate.Name, "addr", "add", "10.83.0.9/24", "dev", "eth1")
	before := linkAddrs(t, gate.Handle, "eth1")
	zones[0].GateAddress = netip.MustParseAddr("10.83.0.2")
	if plan, err = MakePlan("eth0", []string{"eth1"}, nil, zones); err != nil {
		t.Fatal(err)
	}
	res, err := r.Reconcile(plan)
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "10.83.0.9/24") {
		t.Errorf("move: %v, want the error naming %s and 10.83.0.9/24", err, path)
	}
	if a := linkAddrs(t, gate.Handle, "eth1"); len(res.Changes) != 0 || !slices.Equal(a, before) {
		t.Errorf("a refused move changed eth1 (%v): %q, was %q", res.Changes, a, before)
	}

	// Uplink: the same refusal changes nothing.
	lab.Run(t, "ip", "-n", gate.Name, "addr", "add", "10.52.0.2/24", "dev", "eth0", "label", OwnerLabel("eth0"))
	lab.Run(t, "ip", "-n", gate.Name, "addr", "add", "10.52.0.9/24", "dev", "eth0")
	before = linkAddrs(t, gate.Handle, "eth0")
	u, err := ParseStaticUplink("eth0", "10.52.0.3/24", "", "")
	if err != nil {
		t.Fatal(err)
	}
	changed, err := NewStaticUplink(gate.Handle, gate.NS, u, &Resolver{Path: filepath.Join(t.TempDir(), "resolv.conf")}).Apply()
	if err == nil || !strings.Contains(err.Error(), "eth0: cannot turn on promote_secondaries") || !strings.Contains(err.Error(), "10.52.0.9/24") {
		t.Errorf("uplink apply: %v, want the refusal naming eth0 and 10.52.0.9/24", err)
	}
	if a := linkAddrs(t, gate.Handle, "eth0"); changed || !slices.Equal(a, before) {
		t.Errorf("a refused uplink apply changed it (changed %v): %q, was %q", changed, a, before)
	}
}
