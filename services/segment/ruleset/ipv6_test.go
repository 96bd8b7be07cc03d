package ruleset_test

import (
	"os/exec"
	"testing"
	"time"

	"github.com/otgate/otgate/services/segment/internal/nslab"
	"github.com/otgate/otgate/services/segment/ruleset"
)

// The gate is IPv4 only toward the OT side: with the ruleset applied no
// IPv6 packet reaches an asset or the gate from it, whoever sends it (the
// proxy's own sockets too, to a declared asset's IPv6 address), by global
// or link-local address, routed or not, and monitor mode passes none
// either. The neighbour entries are set by hand so that only the rules
// decide (the ruleset also drops neighbour discovery), and IPv6
// forwarding is on, so only the forward chain stops the routed probes.
func TestIPv6DroppedTowardOT(t *testing.T) {
	l := nslab.New(t)
	ip := func(ns *nslab.NS, args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", append([]string{"-n", ns.Name}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("ip -n %s %v: %v\n%s", ns.Name, args, err, out)
		}
	}
	type side struct {
		gateIf, gateMAC, gateAddr string
		peer                      *nslab.NS
		peerIf, peerMAC, peerAddr string
		peerLL                    string
	}
	sides := []side{
		{nslab.Uplink, "02:00:00:00:10:01", "fd00:10::1", l.Client, "cl0", "02:00:00:00:10:02", "fd00:10::2", "fe80::10:2"},
		{nslab.Downlink, "02:00:00:00:20:01", "fd00:20::1", l.Plant, "pl0", "02:00:00:00:20:10", "fd00:20::10", "fe80::20:10"},
		{nslab.Downlink2, "02:00:00:00:30:01", "fd00:30::1", l.Plant2, "pl1", "02:00:00:00:30:10", "fd00:30::10", "fe80::30:10"},
	}
	for _, s := range sides {
		ip(l.Gate, "link", "set", s.gateIf, "address", s.gateMAC)
		ip(s.peer, "link", "set", s.peerIf, "address", s.peerMAC)
		ip(l.Gate, "addr", "add", s.gateAddr+"/64", "dev", s.gateIf, "nodad")
		ip(s.peer, "addr", "add", s.peerAddr+"/64", "dev", s.peerIf, "nodad")
		ip(s.peer, "addr", "add", s.peerLL+"/64", "dev", s.peerIf, "nodad")
		ip(s.peer, "-6", "route", "add", "default", "via", s.gateAddr, "dev", s.peerIf)
		ip(l.Gate, "neigh", "replace", s.peerAddr, "lladdr", s.peerMAC, "dev", s.gateIf, "nud", "permanent")
		ip(l.Gate, "neigh", "replace", s.peerLL, "lladdr", s.peerMAC, "dev", s.gateIf, "nud", "permanent")
		ip(s.peer, "neigh", "replace", s.gateAddr, "lladdr", s.gateMAC, "dev", s.peerIf, "nud", "permanent")
	}
	if out, err := l.Gate.Command("sysctl", "-q", "-w", "net.ipv6.conf.all.forwarding=1").CombinedOutput(); err != nil {
		t.Fatalf("gate IPv6 forwarding: %v\n%s", err, out)
	}
	l.Plant.Listen(t, "[::]:502")
	l.Plant2.Listen(t, "[::]:502")
	l.Gate.Listen(t, "[::]:8443")
	const (
		plc    = "[fd00:20::10]:502"     // plc-1's host, the proxy's declared asset by IPv4
		plcLL  = "[fe80::20:10%dn0]:502" // the same host by link-local address
		rtu    = "[fd00:30::10]:502"     // rtu-1's host, in a monitor zone
		gateOT = "[fd00:20::1]:8443"     // the gate's listener port, by its OT-side address
	)
	probes := func(want bool) []probe {
		return []probe{
			{"proxy to the asset's IPv6 address", l.Gate, proxy, plc, want},
			{"proxy to the asset's link-local address", l.Gate, proxy, plcLL, want},
			{"root to the asset's IPv6 address", l.Gate, root, plc, want},
			{"another uid to the link-local address", l.Gate, otherUID, plcLL, want},
			{"client through the gate (forward)", l.Client, root, plc, want},
			{"client to the monitor zone (forward)", l.Client, root, rtu, want},
			{"monitor zone to the other zone (forward)", l.Plant2, root, plc, want},
			{"asset to the gate's listener port (input)", l.Plant, root, gateOT, want},
		}
	}
	check(t, probes(true))
	if t.Failed() {
		t.Fatal("lab does not carry IPv6; cannot test that the ruleset drops it")
	}
	spec := threeAssets(ruleset.ModeMonitor)
	if _, err := ruleset.Apply(gateConn(t, l), spec, time.Now()); err != nil {
		t.Fatal(err)
	}
	l.SetForwarding(t, true) // IPv4 too: the monitor zone routes
	check(t, probes(false))
	// Control: IPv4 still goes where the spec says.
	l.Plant.Listen(t, nslab.Asset1+":502")
	check(t, []probe{{"proxy to plc-1 over IPv4", l.Gate, proxy, nslab.Asset1 + ":502", true}})
}
