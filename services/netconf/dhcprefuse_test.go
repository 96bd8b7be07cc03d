package netconf

import (
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/otgate/otgate/services/netconf/internal/lab"
	"github.com/otgate/otgate/site"
)

// An ACK the uplink must not carry is refused whoever sends it, and
// one that fits is taken.
func TestCheckACK(t *testing.T) {
	ack := func(yiaddr, mask string) *dhcpv4.DHCPv4 {
		m, err := dhcpv4.New(dhcpv4.WithYourIP(net.ParseIP(yiaddr)), dhcpv4.WithServerIP(net.ParseIP("10.99.0.1")))
		if err != nil {
			t.Fatal(err)
		}
		if mask != "" {
			m.UpdateOption(dhcpv4.OptSubnetMask(net.IPMask(net.ParseIP(mask).To4())))
		}
		return m
	}
	for _, c := range []struct{ yiaddr, mask, want string }{
		{"10.99.0.120", "255.255.255.0", ""},
		{"10.99.0.120", "", ""},                          // class A default mask
		{"192.168.1.7", "255.255.255.255", ""},           // a /32 lease
		{"10.99.0.120", "255.0.255.0", "not contiguous"}, // read as /0 before
		{"10.99.0.120", "0.0.0.0", "every IPv4 address"},
		{"0.0.0.0", "255.255.255.0", "0.0.0.0/8"},
		{"0.1.2.3", "255.255.255.0", "0.0.0.0/8"},
		{"127.0.0.5", "255.0.0.0", "loopback"},
		{"169.254.3.4", "255.255.0.0", "link-local"},
		{"224.0.0.9", "255.255.255.0", "multicast"},
		{"255.255.255.255", "255.255.255.0", "broadcast"},
		{"240.0.0.1", "255.255.255.0", "reserved"},
		{"10.99.0.0", "255.255.255.0", "network or broadcast"},
		{"10.99.0.255", "255.255.255.0", "network or broadcast"},
	} {
		err := checkACK(ack(c.yiaddr, c.mask))
		switch {
		case c.want == "" && err != nil:
			t.Errorf("checkACK(%s mask %q) = %v, want nil", c.yiaddr, c.mask, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("checkACK(%s mask %q) = %v, want an error with %q", c.yiaddr, c.mask, err, c.want)
		}
	}
}

// The service protects every zone's subnet, the subnets of the gate's
// downlink addresses and the overlay prefix from a lease.
func TestProtectedRanges(t *testing.T) {
	zones := []site.Zone{{Name: "cell-a", Interface: "eth1", Subnet: netip.MustParsePrefix("10.20.0.0/24"),
		GateAddress: netip.MustParseAddr("10.20.0.1")}}
	plan, err := MakePlan("eth0", []string{"eth1", "eth2"}, Addresses{"eth2": {netip.MustParsePrefix("192.168.50.1/24")}}, zones)
	if err != nil {
		t.Fatal(err)
	}
	prot := protectedRanges(&site.Site{Zones: zones}, plan) // no overlay prefix: the default
	lease := func(p string) Lease { return Lease{Address: netip.MustParsePrefix(p)} }
	for _, c := range []struct{ lease, want string }{
		{"10.99.0.120/24", ""},
		{"10.20.0.200/25", `zone "cell-a" subnet 10.20.0.0/24`}, // longer than the zone's: would win the route
		{"10.20.0.10/32", `zone "cell-a" subnet`},               // an asset's own address
		{"10.0.0.7/8", `zone "cell-a" subnet`},
		{"192.168.50.9/24", "downlink eth2"},
		{"100.64.3.1/24", "the overlay prefix 100.64.0.0/16"},
		{"100.0.0.1/8", "the overlay prefix"},
	} {
		err := checkProtected(lease(c.lease), prot)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("lease %s: %v, want it taken", c.lease, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("lease %s: %v, want a refusal naming %q", c.lease, err, c.want)
		}
	}
}

// A real server offers a lease in a protected range (here the OT zone's
// subnet): the client refuses the offer with an event naming the range
// and the server, does not REQUEST it, and nothing of it (address,
// default route, DNS) reaches the uplink. The server's offer at every
// discovery is refused again, counted in the status, but makes no new
// event within a minute (a rogue server cannot flood the events ring
// or the log). Once the range is no longer protected, the same server's
// lease is taken: the refusal was the check, not a broken lab.
func TestDHCPRefusesLeaseIntoProtectedRanges(t *testing.T) {
	l := newDHCPLab(t)
	srv := lab.StartDnsmasq(t, l.srv, "srv0", l.dir)
	var mu sync.Mutex
	prot := []Protected{{Prefix: netip.MustParsePrefix("10.99.0.128/25"), What: `zone "cell-a" subnet`},
		{Prefix: netip.MustParsePrefix("10.99.0.0/26"), What: "the subnet of downlink eth1"}}
	ring := NewRing(0, t.Logf)
	c := l.client(ring)
	c.Protected = func() []Protected {
		mu.Lock()
		defer mu.Unlock()
		return prot
	}
	startClient(t, c)
	ev := waitEvent(t, ring, 0, EventRefused, 30*time.Second, nil)
	if !strings.Contains(ev.Detail, `overlaps zone "cell-a" subnet 10.99.0.128/25`) || !strings.Contains(ev.Detail, "offer of "+ev.IP+" from server 10.99.0.1") ||
		!strings.HasPrefix(ev.IP, "10.99.0.") {
		t.Errorf("refusal event: %s", ev)
	}
	// Let the client try again a few times: still nothing applied, each
	// refusal counted, one event.
	lab.WaitFor(t, 30*time.Second, "three refused offers", func() bool { return c.Status().Refusals >= 3 })
	evs, _ := ring.Since(0)
	for _, e := range evs {
		if e.Seq != ev.Seq {
			t.Errorf("an event after the first refusal within a minute: %s", e)
		}
	}
	if log := srv.LogText(); strings.Contains(log, "DHCPREQUEST") || strings.Contains(log, "DHCPACK") {
		t.Errorf("a refused offer was requested:\n%s", log)
	}
	if addrs, gw := l.uplinkState(t); len(addrs) != 0 || gw != "" {
		t.Errorf("after refusals up0 has addresses %v, default route %q; want none", addrs, gw)
	}
	if b, _ := os.ReadFile(c.Resolver.Path); strings.Contains(string(b), "10.99.0.53") {
		t.Errorf("resolv.conf has the refused lease's DNS:\n%s", b)
	}
	st := c.Status()
	if st.Lease != nil || st.State == StateBound || st.Refusals < 3 || !strings.Contains(st.LastError, "overlaps") {
		t.Errorf("status after refusals: %+v", st)
	}

	mu.Lock()
	prot = nil
	mu.Unlock()
	got := waitEvent(t, ring, 0, EventLease, 30*time.Second, nil)
	if addrs, gw := l.uplinkState(t); len(addrs) != 1 || gw != "10.99.0.1" {
		t.Errorf("after the lease (%s) up0 has %v, default route %q", got, addrs, gw)
	}
}

// A server whose subnet mask is not contiguous: before, the lease went
// on the uplink as a /0, every IPv4 address on-link there.
func TestDHCPRefusesNonContiguousMask(t *testing.T) {
	l := newDHCPLab(t)
	lab.StartDnsmasq(t, l.srv, "srv0", l.dir, "--dhcp-option=option:netmask,255.0.255.0")
	ring := NewRing(0, t.Logf)
	c := l.client(ring)
	startClient(t, c)
	ev := waitEvent(t, ring, 0, EventRefused, 30*time.Second, nil)
	if !strings.Contains(ev.Detail, "subnet mask 255.0.255.0 is not contiguous") {
		t.Errorf("refusal event: %s", ev)
	}
	if addrs, gw := l.uplinkState(t); len(addrs) != 0 || gw != "" {
		t.Errorf("up0 has addresses %v, default route %q; want none", addrs, gw)
	}
}

// A lease already held when a policy starts protecting part of it (a
// zone added inside the uplink's subnet) is dropped at the recheck the
// service's sync makes: an event naming the range, its address and
// default route gone from the uplink; offers inside the range are then
// refused, and once the range is free again a lease is taken.
func TestDHCPDropsHeldLeaseNowProtected(t *testing.T) {
	l := newDHCPLab(t)
	lab.StartDnsmasq(t, l.srv, "srv0", l.dir)
	var mu sync.Mutex
	var prot []Protected
	ring := NewRing(0, t.Logf)
	c := l.client(ring)
	c.Protected = func() []Protected {
		mu.Lock()
		defer mu.Unlock()
		return prot
	}
	startClient(t, c)
	got := waitEvent(t, ring, 0, EventLease, 30*time.Second, nil)
	if addrs, gw := l.uplinkState(t); len(addrs) != 1 || gw != "10.99.0.1" {
		t.Fatalf("after the lease (%s) up0 has %v, default route %q", got, addrs, gw)
	}
	c.Recheck() // nothing protected yet: the lease stays
	time.Sleep(200 * time.Millisecond)
	if st := c.Status(); st.State != StateBound || st.Lease == nil {
		t.Fatalf("a recheck with nothing protected dropped the lease: %+v", st)
	}

	mu.Lock()
	prot = []Protected{{Prefix: netip.MustParsePrefix("10.99.0.0/24"), What: `zone "cell-new" subnet`}}
	mu.Unlock()
	c.Recheck()
	ev := waitEvent(t, ring, got.Seq, EventRefused, 10*time.Second, nil)
	if !strings.Contains(ev.Detail, "is refused now") || !strings.Contains(ev.Detail, `zone "cell-new" subnet 10.99.0.0/24`) {
		t.Errorf("drop event: %s", ev)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		addrs, gw := l.uplinkState(t)
		if len(addrs) == 0 && gw == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the drop up0 still has %v, default route %q", addrs, gw)
		}
	}
	// The server's next offer is in the protected range: refused.
	waitEvent(t, ring, ev.Seq, EventRefused, 30*time.Second, nil)
	if st := c.Status(); st.Lease != nil {
		t.Errorf("status after the drop: %+v", st)
	}

	mu.Lock()
	prot = nil
	mu.Unlock()
	again := waitEvent(t, ring, ev.Seq, EventLease, 60*time.Second, nil)
	if addrs, gw := l.uplinkState(t); len(addrs) != 1 || gw != "10.99.0.1" {
		t.Errorf("after the new lease (%s) up0 has %v, default route %q", again, addrs, gw)
	}
}
