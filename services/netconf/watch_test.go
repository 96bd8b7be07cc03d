package netconf

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/otgate/otgate/services/netconf/internal/lab"
	"github.com/otgate/otgate/site"
)

// plantLab is a gate namespace whose downlink eth1 (10.77.0.1/24) sits
// on a switch (a bridge in its own namespace) with devices, each in its
// own namespace; the gate also has an uplink eth0 to an upstream
// namespace, on which no probe may ever appear.
type plantLab struct {
	gate, sw, up *lab.NS
	devices      map[string]*lab.NS
}

func newPlantLab(t *testing.T) *plantLab {
	lab.NeedRoot(t)
	l := &plantLab{gate: lab.NewNS(t, "gate"), sw: lab.NewNS(t, "switch"), up: lab.NewNS(t, "upstream"), devices: map[string]*lab.NS{}}
	lab.Run(t, "ip", "-n", l.sw.Name, "link", "add", "br0", "type", "bridge")
	lab.Run(t, "ip", "-n", l.sw.Name, "link", "set", "br0", "up")
	lab.Veth(t, l.gate, "eth1", l.sw, "sw-gate")
	l.plug(t, "sw-gate")
	lab.Run(t, "ip", "-n", l.gate.Name, "addr", "add", "10.77.0.1/24", "dev", "eth1")
	lab.Run(t, "ip", "-n", l.gate.Name, "link", "set", "eth1", "up")
	lab.Veth(t, l.gate, "eth0", l.up, "u0")
	l.gate.Run(t, "sysctl", "-q", "-w", "net.ipv6.conf.eth0.disable_ipv6=1")
	lab.Run(t, "ip", "-n", l.gate.Name, "link", "set", "eth0", "up")
	lab.Run(t, "ip", "-n", l.up.Name, "link", "set", "u0", "up")
	return l
}

func (l *plantLab) plug(t *testing.T, port string) {
	lab.Run(t, "ip", "-n", l.sw.Name, "link", "set", port, "master", "br0")
	lab.Run(t, "ip", "-n", l.sw.Name, "link", "set", port, "up")
}

// device adds a device with ip/24 and mac on the switch.
func (l *plantLab) device(t *testing.T, name, ip, mac string) *lab.NS {
	ns := lab.NewNS(t, name)
	port := "sw-" + name
	lab.Veth(t, ns, "d0", l.sw, port)
	l.plug(t, port)
	lab.Run(t, "ip", "-n", ns.Name, "link", "set", "d0", "address", mac)
	lab.Run(t, "ip", "-n", ns.Name, "addr", "add", ip+"/24", "dev", "d0")
	lab.Run(t, "ip", "-n", ns.Name, "link", "set", "d0", "up")
	l.devices[name] = ns
	return ns
}

func (l *plantLab) uplinkTx(t *testing.T) uint64 {
	link, err := l.gate.Handle.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	return link.Attrs().Statistics.TxPackets
}

// TestNeighbourWatch: declared assets are found by ARP probes, an
// undeclared device already in the neighbour table at start and one that
// shows up later are reported unknown, a MAC change is reported with old
// and new MAC and marks the asset suspect, and a device that goes away is
// reported absent after the configured time. No probe leaves by the uplink.
func TestNeighbourWatch(t *testing.T) {
	l := newPlantLab(t)
	l.device(t, "plc1", "10.77.0.10", "02:00:00:00:00:10")
	plc2 := l.device(t, "plc2", "10.77.0.11", "02:00:00:00:00:11")
	l.device(t, "rogue", "10.77.0.66", "02:00:00:00:00:66")
	// The rogue is in the gate's neighbour table before the watch starts.
	lab.Poke(t, l.gate, "10.77.0.66")
	lab.WaitFor(t, 5*time.Second, "the rogue in the gate's neighbour table", func() bool {
		return strings.Contains(lab.Run(t, "ip", "-n", l.gate.Name, "neigh", "show", "10.77.0.66"), "lladdr 02:00:00:00:00:66")
	})
	txBefore := l.uplinkTx(t)

	ring := NewRing(0, t.Logf)
	inv := NewInventory(2*time.Second, ring)
	inv.SetAssets([]DeclaredAsset{
		{Name: "plc-1", Zone: "cell-1", Link: "eth1", IP: netip.MustParseAddr("10.77.0.10"), MAC: "02:00:00:00:00:10"},
		{Name: "plc-2", Zone: "cell-1", Link: "eth1", IP: netip.MustParseAddr("10.77.0.11")},
		{Name: "plc-3", Zone: "cell-2", Link: "eth2", IP: netip.MustParseAddr("10.78.0.10")},
	}, time.Now())
	w := &Watcher{Handle: l.gate.Handle, NS: l.gate.NS, Inventory: inv, ProbeInterval: 300 * time.Millisecond, Logf: t.Logf}
	w.SetLinks([]WatchLink{{Name: "eth1", Sources: []netip.Prefix{netip.MustParsePrefix("10.77.0.1/24")}}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("watcher: %v", err)
		}
	})
	start := time.Now()

	unk := waitEvent(t, ring, 0, EventUnknown, 10*time.Second, func(e Event) bool { return e.IP == "10.77.0.66" })
	if unk.MAC != "02:00:00:00:00:66" || !strings.Contains(unk.Detail, "neighbour table") {
		t.Errorf("unknown device event %s: want MAC 02:00:00:00:00:66 from the neighbour table", unk)
	}
	for _, a := range []string{"plc-1", "plc-2"} {
		waitEvent(t, ring, 0, EventPresent, 10*time.Second, func(e Event) bool { return e.Asset == a })
	}
	t.Logf("assets found %s after start", time.Since(start).Round(time.Millisecond))

	// A device that appears later, talking to the gate.
	late := l.device(t, "late", "10.77.0.67", "02:00:00:00:00:67")
	lab.Poke(t, late, "10.77.0.1")
	waitEvent(t, ring, 0, EventUnknown, 10*time.Second, func(e Event) bool { return e.IP == "10.77.0.67" && e.MAC == "02:00:00:00:00:67" })

	// plc-1's MAC changes: the next probe answer shows it.
	mark, _ := ring.Since(0)
	lab.Run(t, "ip", "-n", l.devices["plc1"].Name, "link", "set", "dev", "d0", "address", "02:00:00:00:00:99")
	changed := time.Now()
	mc := waitEvent(t, ring, mark[len(mark)-1].Seq, EventMACChanged, 10*time.Second, func(e Event) bool { return e.Asset == "plc-1" })
	if mc.OldMAC != "02:00:00:00:00:10" || mc.MAC != "02:00:00:00:00:99" {
		t.Errorf("MAC change event %s: want 02:00:00:00:00:10 -> 02:00:00:00:00:99", mc)
	}
	t.Logf("MAC change seen %s after it happened", time.Since(changed).Round(time.Millisecond))
	if v, _ := inv.Asset("plc-1"); !v.Suspect || v.SeenMAC != "02:00:00:00:00:99" {
		t.Errorf("plc-1 after the change: %+v, want suspect", v)
	}
	if v, _ := inv.Asset("plc-2"); v.Suspect || v.State != AssetPresent || v.SeenMAC != "02:00:00:00:00:11" || v.FirstSeen.IsZero() {
		t.Errorf("plc-2: %+v", v)
	}

	// plc-2 goes away.
	lab.Run(t, "ip", "-n", plc2.Name, "link", "del", "d0")
	gone := time.Now()
	waitEvent(t, ring, 0, EventAbsent, 15*time.Second, func(e Event) bool { return e.Asset == "plc-2" })
	t.Logf("plc-2 absent %s after it went away (absent time 2s)", time.Since(gone).Round(time.Millisecond))
	if v, _ := inv.Asset("plc-2"); v.State != AssetAbsent {
		t.Errorf("plc-2 state %s", v.State)
	}
	// plc-3's link is not watched here: never seen, so absent too.
	if v, _ := inv.Asset("plc-3"); v.State != AssetAbsent {
		t.Errorf("plc-3 state %s, want absent", v.State)
	}
	if v, _ := inv.Asset("plc-1"); v.State != AssetPresent {
		t.Errorf("plc-1 state %s, want present (it still answers)", v.State)
	}
	devs := inv.Unknown()
	if len(devs) != 2 || devs[0].IP.String() != "10.77.0.66" || devs[1].IP.String() != "10.77.0.67" {
		t.Errorf("unknown devices: %+v", devs)
	}
	if tx := l.uplinkTx(t); tx != txBefore {
		t.Errorf("the uplink sent %d packets during the watch; probes must only leave by the downlink", tx-txBefore)
	}
}

// TestNeighbourEventsOverSocket: the neighbour watch's "unknown device"
// and "MAC changed" reach a client of the status socket (what `otgate
// netconf events|status` and the proxy read), not only the in-memory
// ring: the events with their IP and MACs, the unknown device in the
// status, and the spoofed asset marked suspect.
func TestNeighbourEventsOverSocket(t *testing.T) {
	l := newPlantLab(t)
	// The service puts the gate's address on eth1 (the policy's
	// gate_address), labelled as its own.
	lab.Run(t, "ip", "-n", l.gate.Name, "addr", "del", "10.77.0.1/24", "dev", "eth1")
	plc := l.device(t, "plc1", "10.77.0.10", "02:00:00:00:00:10")
	rogue := l.device(t, "rogue", "10.77.0.66", "02:00:00:00:00:66")
	dir := t.TempDir()
	pdir := filepath.Join(dir, "policy")
	storePolicy(t, pdir, `zones:
  - {name: cell-1, owner: ot, mode: enforce, interface: eth1, subnet: 10.77.0.0/24, gate_address: 10.77.0.1}
assets:
  - {name: plc-1, zone: cell-1, address: 10.77.0.10, mac: "02:00:00:00:00:10", services: [{protocol: modbus}]}
`)
	sock := filepath.Join(dir, "nc.sock")
	svc, err := New(Config{
		Uplink: Uplink{Mode: UplinkNone}, Downlinks: []string{"eth1"},
		PolicyPath: filepath.Join(pdir, site.AppliedFile), SocketPath: sock,
		Resolver: &Resolver{Path: filepath.Join(dir, "resolv.conf")}, AbsentAfter: time.Minute, ProbeInterval: 300 * time.Millisecond,
		Poll: time.Hour, Repair: time.Hour,
	}, l.gate.Handle, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	svc.NS = l.gate.NS
	svc.Notify = func() error { return nil }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	query := func(req Request) *Response {
		t.Helper()
		qctx, qcancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer qcancel()
		resp, err := Query(qctx, sock, req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	// event waits for an event of kind through the socket.
	event := func(kind EventKind, ok func(Event) bool) Event {
		t.Helper()
		var found Event
		lab.WaitFor(t, 10*time.Second, "a "+string(kind)+" event on the socket", func() bool {
			if _, err := os.Stat(sock); err != nil {
				return false
			}
			for _, e := range query(Request{Op: OpEvents}).Events {
				if e.Kind == kind && ok(e) {
					found = e
					return true
				}
			}
			return false
		})
		return found
	}

	event(EventPresent, func(e Event) bool { return e.Asset == "plc-1" })
	lab.Poke(t, rogue, "10.77.0.1")
	unk := event(EventUnknown, func(e Event) bool { return e.IP == "10.77.0.66" })
	if unk.MAC != "02:00:00:00:00:66" || unk.Link != "eth1" {
		t.Errorf("unknown device event over the socket: %s", unk)
	}
	st := query(Request{Op: OpStatus}).Status
	if len(st.Unknown) != 1 || st.Unknown[0].IP != netip.MustParseAddr("10.77.0.66") || st.Unknown[0].MAC != "02:00:00:00:00:66" {
		t.Errorf("unknown devices in the status: %+v", st.Unknown)
	}

	lab.Run(t, "ip", "-n", plc.Name, "link", "set", "dev", "d0", "address", "02:00:00:00:00:99")
	mc := event(EventMACChanged, func(e Event) bool { return e.Asset == "plc-1" })
	if mc.OldMAC != "02:00:00:00:00:10" || mc.MAC != "02:00:00:00:00:99" || mc.IP != "10.77.0.10" {
		t.Errorf("MAC change event over the socket: %s", mc)
	}
	if a := query(Request{Op: OpAsset, Asset: "plc-1"}).Asset; a == nil || !a.Suspect || a.SeenMAC != "02:00:00:00:00:99" {
		t.Errorf("plc-1 over the socket after the change: %+v, want suspect", a)
	}
	// Later events only: the After cursor of the socket.
	if evs := query(Request{Op: OpEvents, After: mc.Seq}).Events; len(evs) != 0 && evs[0].Seq <= mc.Seq {
		t.Errorf("events after #%d start at #%d", mc.Seq, evs[0].Seq)
	}
}
