package netconf

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/otgate/otgate/services/netconf/internal/lab"
)

// segmentLab is a gate namespace whose uplink up0 is on one Ethernet
// segment (a bridge in a switch namespace) with DHCP servers, each in a
// namespace of its own.
type segmentLab struct {
	*dhcpLab
	sw    *lab.NS
	ports int
}

func newSegmentLab(t *testing.T) *segmentLab {
	lab.NeedRoot(t)
	l := &segmentLab{dhcpLab: &dhcpLab{gate: lab.NewNS(t, "gate"), dir: t.TempDir()}, sw: lab.NewNS(t, "switch")}
	lab.Run(t, "ip", "-n", l.sw.Name, "link", "add", "br0", "type", "bridge", "forward_delay", "0")
	lab.Run(t, "ip", "-n", l.sw.Name, "link", "set", "br0", "up")
	l.plug(t, l.gate, "up0")
	link, err := l.gate.Handle.LinkByName("up0")
	if err != nil {
		t.Fatal(err)
	}
	l.mac = link.Attrs().HardwareAddr
	return l
}

// plug links iface in ns to a new port of the bridge, both up.
func (l *segmentLab) plug(t *testing.T, ns *lab.NS, iface string) {
	l.ports++
	port := "p" + string(rune('0'+l.ports))
	lab.Veth(t, ns, iface, l.sw, port)
	lab.Run(t, "ip", "-n", l.sw.Name, "link", "set", port, "master", "br0")
	lab.Run(t, "ip", "-n", l.sw.Name, "link", "set", port, "up")
	lab.Run(t, "ip", "-n", ns.Name, "link", "set", iface, "up")
}

// server starts dnsmasq in a namespace of its own on the segment,
// serving net.100-150/24 from net.1 (see lab.StartDnsmasqNet).
func (l *segmentLab) server(t *testing.T, role, iface, net string, extra ...string) *lab.DHCPServer {
	ns := lab.NewNS(t, role)
	l.plug(t, ns, iface)
	lab.Run(t, "ip", "-n", ns.Name, "addr", "add", net+".1/24", "dev", iface)
	dir := filepath.Join(l.dir, role)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	srv := lab.StartDnsmasqNet(t, ns, iface, dir, net, extra...)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s dnsmasq log:\n%s", role, srv.LogText())
		}
	})
	return srv
}

// selectClient is l's client with a discovery wait of 2-5 s (back-off 3
// s to 4 s, +-1 s), longer than the proper server's one second of reply
// delay.
func (l *segmentLab) selectClient(ring *Ring, prot *[]Protected, mu *sync.Mutex) *DHCPClient {
	c := l.client(ring)
	c.BackoffMin, c.BackoffMax = 3*time.Second, 4*time.Second
	c.Protected = func() []Protected {
		mu.Lock()
		defer mu.Unlock()
		return append([]Protected(nil), *prot...)
	}
	return c
}

// A rogue server on the uplink's segment answers every DISCOVER first
// (the proper server delays its offers by a second) with a lease inside
// an OT zone's subnet. The client refuses the rogue's offer (an event
// naming the server and the zone), never REQUESTs it, and takes the
// proper server's offer: the uplink ends with the proper lease. Before,
// the first offer was requested blindly, its ACK refused, and the same
// again at every discovery: the uplink stayed without an address.
func TestDHCPPassesOverRogueOfferFirst(t *testing.T) {
	l := newSegmentLab(t)
	rogue := l.server(t, "rogue", "rog0", "10.20.0")
	proper := l.server(t, "proper", "srv0", "10.99.0", "--dhcp-reply-delay=1")
	var mu sync.Mutex
	prot := []Protected{{Prefix: netip.MustParsePrefix("10.20.0.0/24"), What: `zone "cell-a" subnet`}}
	ring := NewRing(0, t.Logf)
	c := l.selectClient(ring, &prot, &mu)
	startClient(t, c)

	got := waitEvent(t, ring, 0, EventLease, 30*time.Second, nil)
	st := c.Status()
	if st.Lease == nil || st.Lease.Server != netip.MustParseAddr("10.99.0.1") || !netip.MustParsePrefix("10.99.0.0/24").Contains(st.Lease.Address.Addr()) {
		t.Fatalf("lease %+v (%s), want one of 10.99.0.0/24 from 10.99.0.1", st.Lease, got)
	}
	if addrs, gw := l.uplinkState(t); len(addrs) != 1 || addrs[0] != st.Lease.Address.String()+" up0:nc" || gw != "10.99.0.1" {
		t.Errorf("up0 has %v, default route %q; want %s via 10.99.0.1", addrs, gw, st.Lease.Address)
	}
	// The rogue's offer came first and was refused before the lease.
	ref := waitEvent(t, ring, 0, EventRefused, time.Second, nil)
	if ref.Seq > got.Seq || !strings.HasPrefix(ref.IP, "10.20.0.") ||
		!strings.Contains(ref.Detail, "offer of "+ref.IP+" from server 10.20.0.1") ||
		!strings.Contains(ref.Detail, `overlaps zone "cell-a" subnet 10.20.0.0/24`) {
		t.Errorf("refused-offer event %s (lease %s)", ref, got)
	}
	if !strings.Contains(rogue.LogText(), "DHCPOFFER(rog0)") {
		t.Errorf("the rogue made no offer")
	}
	if log := rogue.LogText(); strings.Contains(log, "DHCPREQUEST(rog0) 10.20.0.") || strings.Contains(log, "DHCPACK") {
		t.Errorf("the rogue's offer was requested:\n%s", log)
	}
	if !strings.Contains(proper.LogText(), "DHCPACK(srv0) "+st.Lease.Address.Addr().String()) {
		t.Errorf("the proper server's log lacks the ACK of %s", st.Lease.Address.Addr())
	}
	if st.Refusals < 1 || st.State != StateBound {
		t.Errorf("status %+v", st)
	}
}

// A rogue server answers first with an acceptable offer (10.30.0.x/24)
// but ACKs the REQUEST with a /16 that overlaps an OT zone (10.30.128.0/24
// here). The client refuses the ACK, RELEASEs the binding (not DECLINE:
// the address is not in use) and passes the rogue over: at the next
// discovery the proper server's offer, a second later, is taken. Before,
// the rogue's first offer was requested at every discovery and the
// uplink never got an address.
//
// Then the proper server goes away, the zone with it, and the held lease
// is dropped by a policy that now protects its subnet: the rogue, still
// passed over but now the only server, gets its offer taken after the
// selection window (passing over is not a ban).
func TestDHCPRefusedAckReleasedServerPassedOver(t *testing.T) {
	l := newSegmentLab(t)
	// dnsmasq tags the REQUEST (it carries a requested address, option
	// 50; DISCOVER does not) and answers it with another mask.
	rogue := l.server(t, "rogue", "rog0", "10.30.0", "--dhcp-match=set:req,50", "--dhcp-option=tag:req,option:netmask,255.255.0.0")
	proper := l.server(t, "proper", "srv0", "10.99.0", "--dhcp-reply-delay=1")
	var mu sync.Mutex
	prot := []Protected{{Prefix: netip.MustParsePrefix("10.30.128.0/24"), What: `zone "cell-b" subnet`}}
	ring := NewRing(0, t.Logf)
	var logMu sync.Mutex
	var logs []string
	c := l.selectClient(ring, &prot, &mu)
	c.Logf = func(f string, a ...any) {
		t.Logf(f, a...)
		logMu.Lock()
		logs = append(logs, f)
		logMu.Unlock()
	}
	startClient(t, c)

	ref := waitEvent(t, ring, 0, EventRefused, 30*time.Second, nil)
	if !strings.HasPrefix(ref.IP, "10.30.0.") || !strings.Contains(ref.Detail, "from server 10.30.0.1 in requesting") ||
		!strings.Contains(ref.Detail, `leased subnet 10.30.0.0/16 overlaps zone "cell-b" subnet 10.30.128.0/24`) ||
		!strings.Contains(ref.Detail, "released to 10.30.0.1") || !strings.Contains(ref.Detail, "passed over") {
		t.Errorf("refused-ACK event: %s", ref)
	}
	lab.WaitFor(t, 5*time.Second, "the rogue to log the release", func() bool {
		return strings.Contains(rogue.LogText(), "DHCPRELEASE(rog0) "+ref.IP)
	})
	got := waitEvent(t, ring, ref.Seq, EventLease, 30*time.Second, nil)
	st := c.Status()
	if st.Lease == nil || st.Lease.Server != netip.MustParseAddr("10.99.0.1") {
		t.Fatalf("lease %+v (%s), want one from 10.99.0.1", st.Lease, got)
	}
	if addrs, gw := l.uplinkState(t); len(addrs) != 1 || addrs[0] != st.Lease.Address.String()+" up0:nc" || gw != "10.99.0.1" {
		t.Errorf("up0 has %v, default route %q; want %s via 10.99.0.1", addrs, gw, st.Lease.Address)
	}
	log := rogue.LogText()
	if n := strings.Count(log, "DHCPACK(rog0)"); n != 1 {
		t.Errorf("the rogue ACKed %d times, want once (passed over after the refusal):\n%s", n, log)
	}
	if strings.Contains(log, "DHCPDECLINE") {
		t.Errorf("the refused ACK was declined:\n%s", log)
	}
	if strings.Contains(rogue.LeaseText(), l.mac.String()) {
		t.Errorf("the rogue still holds a lease for %s:\n%s", l.mac, rogue.LeaseText())
	}
	if !strings.Contains(proper.LogText(), "DHCPACK(srv0) "+st.Lease.Address.Addr().String()) {
		t.Errorf("the proper server's log lacks the ACK of %s", st.Lease.Address.Addr())
	}

	// Only the passed-over server is left; a policy drops the held lease.
	proper.Stop(t)
	mu.Lock()
	prot = []Protected{{Prefix: netip.MustParsePrefix("10.99.0.0/24"), What: `zone "cell-c" subnet`}}
	mu.Unlock()
	c.Recheck()
	drop := waitEvent(t, ring, got.Seq, EventRefused, 10*time.Second, nil)
	again := waitEvent(t, ring, drop.Seq, EventLease, 30*time.Second, nil)
	st = c.Status()
	if st.Lease == nil || st.Lease.Server != netip.MustParseAddr("10.30.0.1") || st.Lease.Address.Bits() != 16 {
		t.Fatalf("lease %+v (%s), want a /16 from the rogue", st.Lease, again)
	}
	logMu.Lock()
	defer logMu.Unlock()
	if !strings.Contains(strings.Join(logs, "\n"), "no other server offered within") {
		t.Errorf("no log line about taking the passed-over server's offer")
	}
}

// A restart asks for the remembered address (INIT-REBOOT) and the server
// ACKs it, but a zone now covers its subnet: the ACK is refused, the
// binding RELEASEd (dnsmasq drops it), the remembered address
// forgotten, and the server's offers are refused from then on.
func TestDHCPRefusedInitRebootReleased(t *testing.T) {
	l := newDHCPLab(t)
	srv := lab.StartDnsmasq(t, l.srv, "srv0", l.dir)
	ring := NewRing(0, t.Logf)
	c := l.client(ring)
	c.hw = l.mac
	c.saveHint(netip.MustParseAddr("10.99.0.120"))
	c.Protected = func() []Protected {
		return []Protected{{Prefix: netip.MustParsePrefix("10.99.0.0/24"), What: `zone "cell-a" subnet`}}
	}
	startClient(t, c)
	ref := waitEvent(t, ring, 0, EventRefused, 20*time.Second, nil)
	if ref.IP != "10.99.0.120" || !strings.Contains(ref.Detail, "in init-reboot") || !strings.Contains(ref.Detail, "released to 10.99.0.1") {
		t.Errorf("refused INIT-REBOOT event: %s", ref)
	}
	lab.WaitFor(t, 5*time.Second, "dnsmasq to log the release", func() bool {
		return strings.Contains(srv.LogText(), "DHCPRELEASE(srv0) 10.99.0.120") && !strings.Contains(srv.LeaseText(), l.mac.String())
	})
	if _, err := os.Stat(c.HintPath); !os.IsNotExist(err) {
		t.Errorf("the refused address is still remembered (%v)", err)
	}
	next := waitEvent(t, ring, ref.Seq, EventRefused, 20*time.Second, nil)
	if !strings.Contains(next.Detail, "refused the offer of") {
		t.Errorf("after the refused INIT-REBOOT: %s", next)
	}
	if addrs, gw := l.uplinkState(t); len(addrs) != 0 || gw != "" {
		t.Errorf("up0 has %v, default route %q; want none", addrs, gw)
	}
}
