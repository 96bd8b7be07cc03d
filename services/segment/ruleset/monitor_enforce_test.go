package ruleset_test

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/otgate/otgate/services/segment/internal/nslab"
	"github.com/otgate/otgate/services/segment/ruleset"
)

// A third downlink, dn2, carries monitor zone cell-c: asset mon-2 and a
// host no zone declares. On dn0, beside enforce zone cell-a's plc-1, sit
// an undeclared host (10.20.0.11, hmi-1's address, not declared here) and
// mon-3 of monitor zone cell-m (an interface carrying an enforce and a
// monitor zone counts as enforce).
const (
	downlink3      = "dn2"
	gateDownlink3  = "10.50.0.1"
	monAsset2      = "10.50.0.10"
	monUndeclared  = "10.50.0.11"
	enforceHidden  = nslab.Asset2 // undeclared on dn0
	sharedMonAsset = "10.20.0.12"
)

func monitorBesideEnforceSpec() *ruleset.Spec {
	b := baseSpec()
	b.Downlinks = append(b.Downlinks, downlink3)
	return &ruleset.Spec{
		BaselineSpec:      b,
		EnforceInterfaces: []string{nslab.Downlink},
		Assets: []ruleset.Asset{
			{Name: "plc-1", Zone: "cell-a", Mode: ruleset.ModeEnforce, Address: nslab.Asset1, TCPPorts: []uint16{502}},
			{Name: "rtu-1", Zone: "cell-b", Mode: ruleset.ModeMonitor, Address: nslab.Asset3, TCPPorts: []uint16{502}},
			{Name: "mon-2", Zone: "cell-c", Mode: ruleset.ModeMonitor, Address: monAsset2, TCPPorts: []uint16{502}},
			{Name: "mon-3", Zone: "cell-m", Mode: ruleset.ModeMonitor, Address: sharedMonAsset, TCPPorts: []uint16{502}},
		},
	}
}

// dialFrom opens a TCP connection in ns from the local address laddr.
func dialFrom(ns *nslab.NS, laddr, raddr string, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := ns.Do(func() error {
		d := net.Dialer{Timeout: timeout, LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(laddr), 0))}
		var err error
		c, err = d.Dial("tcp4", raddr)
		return err
	})
	return c, err
}

// ruleCounter is the packet count of the counter in the gate's rule name
// (its comment without the prefix) in chain.
func ruleCounter(t *testing.T, l *nslab.Lab, chain, name string) uint64 {
	t.Helper()
	for _, o := range nftJSON(t, l) {
		r, ok := o["rule"].(map[string]any)
		if !ok || r["table"] != "otgate" || r["chain"] != chain || r["comment"] != "otgate:"+name {
			continue
		}
		exprs, _ := r["expr"].([]any)
		for _, e := range exprs {
			if c, ok := e.(map[string]any)["counter"].(map[string]any); ok {
				n, _ := c["packets"].(float64)
				return uint64(n)
			}
		}
	}
	t.Errorf("no counter in rule %s of chain %s", name, chain)
	return 0
}

// An enforce zone stays enforced whatever the other zones' modes: a
// monitor-zone asset cannot reach a host on an enforce zone's interface
// that no zone declares (forward/from-monitor-zone accepted every packet of
// a monitor-zone asset, whatever its destination, before
// forward/to-enforce-interface). What monitor mode lets through is
// unchanged: the monitor-zone asset reaches the uplink's side, another
// monitor zone's asset and that zone's undeclared hosts, and a monitor-zone
// asset on the enforce zone's interface; a declared enforce-zone asset
// keeps its verdict (enforce_drop); and an undeclared host on the enforce
// zone's interface still gets the replies of a flow it opened toward a
// monitor-zone asset.
func TestMonitorZoneCannotReachUndeclaredHostsOfEnforceZones(t *testing.T) {
	l := nslab.New(t)
	l.SetForwarding(t, true) // the segment service would: the spec has monitor zones
	mon := l.AddNS(t, "m")
	l.Link(t, downlink3, gateDownlink3, mon, "pm0", monAsset2)
	mon.IP(t, "addr", "add", monUndeclared+"/24", "dev", "pm0")
	mon.IP(t, "route", "add", "default", "via", gateDownlink3)
	l.Plant.IP(t, "addr", "add", sharedMonAsset+"/24", "dev", "pl0")
	for _, a := range []string{nslab.Asset1, enforceHidden, sharedMonAsset} {
		l.Plant.Listen(t, a+":502")
	}
	mon.Listen(t, monAsset2+":502")
	mon.Listen(t, monUndeclared+":502")
	l.Client.Listen(t, nslab.Client+":8080")
	echoServer(t, l.Plant2, nslab.Asset3+":"+echoPort)

	check(t, []probe{{"control: rtu-1 to the undeclared host, no ruleset", l.Plant2, root, enforceHidden + ":502", true}})
	if t.Failed() {
		t.Fatal("lab broken: cannot test the enforce interfaces")
	}

	conn := gateConn(t, l)
	spec := monitorBesideEnforceSpec()
	d, err := ruleset.Apply(conn, spec, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	// The segment service reads the table back after every apply and
	// compares it with what it applied: the set of interfaces and the new
	// rule must read back as written.
	snap, err := ruleset.ReadSnapshot(conn)
	if err != nil {
		t.Fatalf("read back: %v", err)
	}
	if drift := ruleset.Drift(d, snap, snap); len(drift) != 0 {
		t.Fatalf("drift right after apply: %v", drift)
	}
	again, err := ruleset.ReadSnapshot(conn)
	if err != nil || !again.Equal(snap) {
		t.Fatalf("second read back differs (%v)", err)
	}

	dropsBefore := ruleCounter(t, l, ruleset.ChainForward, "forward/to-enforce-interface")
	enforceBefore := enforceDrops(t, l)
	check(t, []probe{
		{"rtu-1 (monitor zone) to an undeclared host on the enforce zone's interface", l.Plant2, root, enforceHidden + ":502", false},
		{"mon-2 (monitor zone) to an undeclared host on the enforce zone's interface", mon, root, enforceHidden + ":502", false},
		{"rtu-1 to plc-1 (declared, enforce zone)", l.Plant2, root, nslab.Asset1 + ":502", false},
		{"rtu-1 to the uplink's side", l.Plant2, root, nslab.Client + ":8080", true},
		{"rtu-1 to mon-2 (another monitor zone)", l.Plant2, root, monAsset2 + ":502", true},
		{"rtu-1 to an undeclared host of a monitor zone's interface", l.Plant2, root, monUndeclared + ":502", true},
		{"rtu-1 to mon-3 (monitor zone on the enforce zone's interface)", l.Plant2, root, sharedMonAsset + ":502", true},
		{"the client to the undeclared host", l.Client, root, enforceHidden + ":502", false},
	})
	if after := ruleCounter(t, l, ruleset.ChainForward, "forward/to-enforce-interface"); after <= dropsBefore {
		t.Errorf("forward/to-enforce-interface counted %d packets before the probes and %d after; want the SYNs toward %s", dropsBefore, after, enforceHidden)
	}
	if after := enforceDrops(t, l); after <= enforceBefore {
		t.Errorf("enforce_drop counted %d packets before the probes and %d after; want the SYNs toward plc-1 there", enforceBefore, after)
	}
	flows := wouldBlockFlows(t, l)
	if _, ok := flows["10.30.0.10 -> "+enforceHidden+" tcp/502"]; ok {
		t.Errorf("rtu-1 -> %s recorded as would-block: %v", enforceHidden, flows)
	}
	if _, ok := flows["10.30.0.10 -> "+monUndeclared+" tcp/502"]; !ok {
		t.Errorf("rtu-1 -> %s (monitor zone's interface) not recorded: %v", monUndeclared, flows)
	}

	// The undeclared host opens a flow toward rtu-1: monitor mode admits
	// and records it, and rtu-1's replies go out through the enforce
	// zone's interface (forward/monitor-replies comes first).
	c, err := dialFrom(l.Plant, enforceHidden, nslab.Asset3+":"+echoPort, mustPass)
	if err != nil {
		t.Fatalf("undeclared %s to rtu-1 (monitor zone): %v; monitor mode lets it and its replies through", enforceHidden, err)
	}
	defer c.Close()
	if err := exchange(c, 64<<10, mustPass); err != nil {
		t.Errorf("64 KiB echoed over %s -> rtu-1: %v", enforceHidden, err)
	}
	if _, ok := wouldBlockFlows(t, l)[enforceHidden+" -> 10.30.0.10 tcp/"+echoPort]; !ok {
		t.Errorf("%s -> rtu-1 not recorded as would-block", enforceHidden)
	}
}
