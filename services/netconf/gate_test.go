package netconf

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/otgate/otgate/services/netconf/internal/lab"
	"github.com/otgate/otgate/site"
)

func gateZone(name, ifname string, vlan int, subnet, gate string) site.Zone {
	z := zone(name, ifname, vlan, subnet)
	if gate != "" {
		z.GateAddress = netip.MustParseAddr(gate)
	}
	return z
}

// The gate's addresses come from the zones: any subnet (not only the
// demo's), on the zone's VLAN interface for a VLAN zone; an address from
// the flags in a zone's subnet overrides the zone's (a warning).
func TestMakePlanGateAddressesFromZones(t *testing.T) {
	zones := []site.Zone{
		gateZone("press", "eth1", 0, "192.168.40.0/24", "192.168.40.254"),
		gateZone("paint", "eth1", 0, "172.20.8.0/22", "172.20.11.1"),
		gateZone("boiler", "eth1", 300, "10.200.0.0/28", "10.200.0.14"),
		gateZone("lab", "eth2", 0, "10.1.0.0/24", "10.1.0.1"),
	}
	p, err := MakePlan("eth0", []string{"eth1", "eth2"}, Addresses{"eth2": pfx("10.1.0.9/24")}, zones)
	if err != nil {
		t.Fatal(err)
	}
	want := []LinkPlan{
		{Name: "eth1", Addresses: []netip.Prefix{netip.MustParsePrefix("172.20.11.1/22"), netip.MustParsePrefix("192.168.40.254/24")}, Zones: []string{"press", "paint"}},
		{Name: "eth2", Addresses: pfx("10.1.0.9/24"), Zones: []string{"lab"}},
		{Name: "eth1.300", Parent: "eth1", VLAN: 300, Addresses: pfx("10.200.0.14/28"), Zones: []string{"boiler"}},
	}
	if !reflect.DeepEqual(p.Links, want) {
		t.Errorf("links\n %+v\nwant\n %+v", p.Links, want)
	}
	if len(p.Warnings) != 1 || p.Warnings[0] != `zone "lab" on eth2: gate address 10.1.0.9/24 from the flags overrides the site file's 10.1.0.1/24` {
		t.Errorf("warnings %q", p.Warnings)
	}

	// A flag address elsewhere that overlaps a zone's gate address is
	// refused like any overlap.
	_, err = MakePlan("eth0", []string{"eth1", "eth2"}, Addresses{"eth2": pfx("192.168.40.1/16")},
		[]site.Zone{zones[0], gateZone("wide", "eth2", 0, "192.168.0.0/16", "192.168.0.1")})
	if err == nil || !strings.Contains(err.Error(), "overlaps") {
		t.Errorf("overlap: %v", err)
	}
}

// syncLog collects a service's log lines.
type syncLog struct {
	mu    sync.Mutex
	lines []string
	t     *testing.T
}

func (l *syncLog) logf(format string, args ...any) {
	l.mu.Lock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
	l.mu.Unlock()
	l.t.Logf(format, args...)
}

func (l *syncLog) has(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range l.lines {
		if strings.Contains(line, s) {
			return true
		}
	}
	return false
}

// TestServiceGateAddressesFollowPolicy: with no address flags at all, the
// service puts each zone's gate address from the applied policy on the
// zone's interface (non-demo subnets, two zones on one downlink); the
// plant reaches the gate there; a policy edit that moves a zone's gate
// address removes the old one, adds the new one and logs the move.
func TestServiceGateAddressesFollowPolicy(t *testing.T) {
	lab.NeedRoot(t)
	gate, plant := lab.NewNS(t, "gate"), lab.NewNS(t, "plant")
	lab.Veth(t, gate, "eth1", plant, "p1")
	plant.Run(t, "ip", "addr", "add", "192.168.40.20/24", "dev", "p1")
	plant.Run(t, "ip", "link", "set", "p1", "up")
	dir := t.TempDir()
	pdir := filepath.Join(dir, "policy")
	const zones = `zones:
  - {name: press, owner: ot, mode: enforce, interface: eth1, subnet: 192.168.40.0/24, gate_address: %s}
  - {name: boiler, owner: ot, mode: enforce, interface: eth1, subnet: 172.16.30.0/24, gate_address: 172.16.30.1}
assets:
  - {name: plc-1, zone: press, address: 192.168.40.20, services: [{protocol: modbus}]}
`
	storePolicy(t, pdir, fmt.Sprintf(zones, "192.168.40.254"))

	log := &syncLog{t: t}
	svc := startService(t, gate, dir, pdir, []string{"eth1"}, log.logf)
	if st := svc.Status(); st.Error != "" || len(st.Warnings) != 0 {
		t.Fatalf("status error %q, warnings %q", st.Error, st.Warnings)
	}
	if a := linkAddrs(t, gate.Handle, "eth1"); !reflect.DeepEqual(a, []string{"172.16.30.1/24 eth1:nc", "192.168.40.254/24 eth1:nc"}) {
		t.Errorf("eth1 %q", a)
	}
	if !answers(plant, "192.168.40.254") {
		t.Errorf("the plant does not reach the gate on 192.168.40.254")
	}

	// The zone's gate address moves.
	storePolicy(t, pdir, fmt.Sprintf(zones, "192.168.40.1"))
	syncs := svc.Status().Syncs
	svc.Reload()
	lab.WaitFor(t, 10*time.Second, "the reload", func() bool { return svc.Status().Syncs > syncs })
	if st := svc.Status(); st.Error != "" {
		t.Fatalf("status error after the move: %q", st.Error)
	}
	if a := linkAddrs(t, gate.Handle, "eth1"); !reflect.DeepEqual(a, []string{"172.16.30.1/24 eth1:nc", "192.168.40.1/24 eth1:nc"}) {
		t.Errorf("eth1 after the move %q", a)
	}
	for _, want := range []string{
		"netconf: eth1: removed 192.168.40.254/24",
		"netconf: eth1: added 192.168.40.1/24",
		`netconf: zone "press": gate address moved from 192.168.40.254/24 on eth1 to 192.168.40.1/24 on eth1`,
	} {
		if !log.has(want) {
			t.Errorf("no log line %q", want)
		}
	}
	if log.has(`zone "boiler": gate address moved`) {
		t.Error("the unmoved zone was logged as moved")
	}
	if !answers(plant, "192.168.40.1") {
		t.Errorf("the plant does not reach the gate on 192.168.40.1")
	}
	if answers(plant, "192.168.40.254") {
		t.Error("the old gate address still answers")
	}
}

// answers says whether ip answers a TCP connection from ns (with a
// reset: nothing listens); an address nobody holds gets no ARP reply.
func answers(ns *lab.NS, ip string) bool {
	out, _ := exec.Command("ip", "netns", "exec", ns.Name, "timeout", "3", "bash", "-c", "echo > /dev/tcp/"+ip+"/9").CombinedOutput()
	return strings.Contains(string(out), "Connection refused")
}

// startService runs a netconf service with no uplink and no address flags
// on the policy in pdir, and waits for it to be ready.
func startService(t *testing.T, gate *lab.NS, dir, pdir string, downlinks []string, logf func(string, ...any)) *Service {
	t.Helper()
	cfg := Config{
		Uplink:     Uplink{Mode: UplinkNone},
		Downlinks:  downlinks,
		PolicyPath: filepath.Join(pdir, site.AppliedFile), SocketPath: filepath.Join(dir, "nc.sock"),
		Resolver: &Resolver{Path: filepath.Join(dir, "resolv.conf")}, AbsentAfter: time.Minute, Poll: time.Hour, Repair: time.Hour,
	}
	svc, err := New(cfg, gate.Handle, logf)
	if err != nil {
		t.Fatal(err)
	}
	svc.NS = gate.NS
	ready := make(chan struct{})
	svc.Notify = func() error { close(ready); return nil }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		t.Fatal("not ready")
	}
	return svc
}

// TestServiceVLANZoneGateAddress: a VLAN zone's gate address goes on the
// zone's 802.1Q sub-interface, which the plant reaches tagged; moving it
// swaps the address there.
func TestServiceVLANZoneGateAddress(t *testing.T) {
	lab.NeedRoot(t)
	gate, plant := lab.NewNS(t, "gate"), lab.NewNS(t, "plant")
	lab.Veth(t, gate, "eth1", plant, "p1")
	dir := t.TempDir()
	pdir := filepath.Join(dir, "policy")
	const zones = `zones:
  - {name: boiler, owner: ot, mode: enforce, interface: eth1, vlan: 300, subnet: 172.16.30.0/24, gate_address: %s}
`
	storePolicy(t, pdir, fmt.Sprintf(zones, "172.16.30.1"))
	log := &syncLog{t: t}
	svc := startService(t, gate, dir, pdir, []string{"eth1"}, log.logf)
	if st := svc.Status(); strings.Contains(st.Error, "8021q") {
		t.Skipf("this kernel has no 802.1Q support (modprobe 8021q): %s", st.Error)
	} else if st.Error != "" {
		t.Fatalf("status error %q", st.Error)
	}
	if a := linkAddrs(t, gate.Handle, "eth1.300"); !reflect.DeepEqual(a, []string{"172.16.30.1/24 eth1.300:nc"}) {
		t.Errorf("eth1.300 %q", a)
	}
	if a := linkAddrs(t, gate.Handle, "eth1"); len(a) != 0 {
		t.Errorf("the parent eth1 got addresses %q", a)
	}
	plant.Run(t, "ip", "link", "add", "link", "p1", "name", "p1.300", "type", "vlan", "id", "300")
	plant.Run(t, "ip", "addr", "add", "172.16.30.20/24", "dev", "p1.300")
	plant.Run(t, "ip", "link", "set", "p1", "up")
	plant.Run(t, "ip", "link", "set", "p1.300", "up")
	if !answers(plant, "172.16.30.1") {
		t.Errorf("the plant does not reach the gate on 172.16.30.1")
	}

	storePolicy(t, pdir, fmt.Sprintf(zones, "172.16.30.5"))
	syncs := svc.Status().Syncs
	svc.Reload()
	lab.WaitFor(t, 10*time.Second, "the reload", func() bool { return svc.Status().Syncs > syncs })
	if a := linkAddrs(t, gate.Handle, "eth1.300"); !reflect.DeepEqual(a, []string{"172.16.30.5/24 eth1.300:nc"}) {
		t.Errorf("eth1.300 after the move %q", a)
	}
	if !log.has(`netconf: zone "boiler": gate address moved from 172.16.30.1/24 on eth1.300 to 172.16.30.5/24 on eth1.300`) {
		t.Error("the move was not logged")
	}
}
