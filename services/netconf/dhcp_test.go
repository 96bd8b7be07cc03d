package netconf

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/otgate/otgate/services/netconf/internal/lab"
)

// dhcpLab is a gate namespace whose uplink up0 is wired to srv0 in a
// server namespace (10.99.0.1/24).
type dhcpLab struct {
	gate, srv *lab.NS
	dir       string
	mac       net.HardwareAddr
}

func newDHCPLab(t *testing.T) *dhcpLab {
	lab.NeedRoot(t)
	l := &dhcpLab{gate: lab.NewNS(t, "gate"), srv: lab.NewNS(t, "dhcpsrv"), dir: t.TempDir()}
	lab.Veth(t, l.gate, "up0", l.srv, "srv0")
	lab.Run(t, "ip", "-n", l.srv.Name, "addr", "add", "10.99.0.1/24", "dev", "srv0")
	lab.Run(t, "ip", "-n", l.srv.Name, "link", "set", "srv0", "up")
	lab.Run(t, "ip", "-n", l.gate.Name, "link", "set", "up0", "up") // carrier for the server
	link, err := l.gate.Handle.LinkByName("up0")
	if err != nil {
		t.Fatal(err)
	}
	l.mac = link.Attrs().HardwareAddr
	return l
}

func (l *dhcpLab) client(ring *Ring) *DHCPClient {
	return &DHCPClient{
		Link: "up0", Handle: l.gate.Handle, NS: l.gate.NS,
		Resolver:   &Resolver{Path: filepath.Join(l.dir, "resolv.conf")},
		HintPath:   filepath.Join(l.dir, "perm", "dhcp-hint.cbor"),
		BackoffMin: time.Second, BackoffMax: 2 * time.Second, RetryMin: time.Second,
		Events: ring,
	}
}

// uplinkState is what the kernel shows on up0.
func (l *dhcpLab) uplinkState(t *testing.T) (addrs []string, gw string) {
	t.Helper()
	link, err := l.gate.Handle.LinkByName("up0")
	if err != nil {
		t.Fatal(err)
	}
	as, err := l.gate.Handle.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range as {
		addrs = append(addrs, a.IPNet.String()+" "+a.Label)
	}
	rs, err := l.gate.Handle.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if (r.Dst == nil || r.Dst.String() == "0.0.0.0/0") && r.Protocol == unix.RTPROT_DHCP {
			gw = r.Gw.String()
		}
	}
	return addrs, gw
}

func startClient(t *testing.T, c *DHCPClient) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("dhcp client: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Errorf("dhcp client did not stop within 20s")
		}
	}
	t.Cleanup(stop)
	return stop
}

// TestDHCPLeaseRenewRelease runs the client against dnsmasq: a stale
// remembered address is refused (NAK at INIT-REBOOT), a lease is obtained
// and applied (address, default route, DNS file), renewed at T1 by
// unicast, released on stop; a restart gets the same address back by
// INIT-REBOOT.
func TestDHCPLeaseRenewRelease(t *testing.T) {
	l := newDHCPLab(t)
	// T1 4 s, T2 90 s: renewal shows within seconds; lease 2 min
	// (dnsmasq's minimum).
	srv := lab.StartDnsmasq(t, l.srv, "srv0", l.dir, "--dhcp-option=option:T1,4", "--dhcp-option=option:T2,90",
		"--dhcp-option=option:ntp-server,10.99.0.123,10.99.0.124")

	ring := NewRing(0, t.Logf)
	c := l.client(ring)
	c.hw = l.mac
	c.saveHint(netip.MustParseAddr("10.99.0.250")) // outside the range: stale
	if _, err := os.Stat(c.HintPath); err != nil {
		t.Fatalf("hint not written: %v", err)
	}
	start := time.Now()
	stop := startClient(t, c)

	nak := waitEvent(t, ring, 0, EventNAK, 20*time.Second, nil)
	if !strings.Contains(nak.Detail, "10.99.0.250") {
		t.Errorf("NAK event should name the remembered address: %s", nak)
	}
	ev := waitEvent(t, ring, nak.Seq, EventLease, 30*time.Second, nil)
	t.Logf("lease after %s: %s", time.Since(start).Round(time.Millisecond), ev)
	st := c.Status()
	if st.Lease == nil || st.State != StateBound {
		t.Fatalf("status after lease: %+v", st)
	}
	got := st.Lease.Address
	if !netip.MustParsePrefix("10.99.0.0/24").Contains(got.Addr()) || got.Bits() != 24 || got.Addr().As4()[3] < 100 || got.Addr().As4()[3] > 150 {
		t.Fatalf("leased %s, want an address of 10.99.0.100-150/24", got)
	}
	if st.Lease.T1 != 4*time.Second || st.Lease.Duration != 2*time.Minute {
		t.Errorf("lease T1 %s duration %s, want 4s and 2m0s", st.Lease.T1, st.Lease.Duration)
	}
	if st.NAKs != 1 {
		t.Errorf("NAKs = %d, want 1", st.NAKs)
	}
	if got := fmt.Sprint(st.Lease.NTP); got != "[10.99.0.123 10.99.0.124]" {
		t.Errorf("lease NTP servers %s, want dnsmasq's [10.99.0.123 10.99.0.124] (option 42)", got)
	}
	addrs, gw := l.uplinkState(t)
	if want := got.String() + " up0:nc"; len(addrs) != 1 || addrs[0] != want {
		t.Errorf("up0 addresses %q, want [%q]", addrs, want)
	}
	if gw != "10.99.0.1" {
		t.Errorf("default route via %q, want 10.99.0.1 (protocol dhcp)", gw)
	}
	resolv, _ := os.ReadFile(c.Resolver.Path)
	if !strings.Contains(string(resolv), "nameserver 10.99.0.53\n") || !strings.Contains(string(resolv), "search plant.example\n") {
		t.Errorf("resolv.conf:\n%s", resolv)
	}
	// The kernel holds the address only for the lease's lifetime.
	link, _ := l.gate.Handle.LinkByName("up0")
	as, _ := l.gate.Handle.AddrList(link, netlink.FAMILY_V4)
	if len(as) == 1 && (as[0].ValidLft <= 0 || as[0].ValidLft > 120) {
		t.Errorf("address valid lifetime %d s, want the lease's (<= 120)", as[0].ValidLft)
	}

	ren := waitEvent(t, ring, ev.Seq, EventRenewed, 30*time.Second, nil)
	t.Logf("renewed after %s: %s", time.Since(start).Round(time.Millisecond), ren)
	if c.Status().Renewals < 1 {
		t.Errorf("renewal counter not raised: %+v", c.Status())
	}
	// dnsmasq saw the renewal come from the leased address (unicast,
	// ciaddr set): its log names the address with the REQUEST.
	lab.WaitFor(t, 5*time.Second, "dnsmasq to log the renewal", func() bool {
		return strings.Count(srv.LogText(), "DHCPACK(srv0) "+got.Addr().String()) >= 2
	})
	if !strings.Contains(srv.LeaseText(), l.mac.String()) {
		t.Fatalf("dnsmasq lease file lacks %s:\n%s", l.mac, srv.LeaseText())
	}

	stop()
	waitEvent(t, ring, ren.Seq, EventReleased, 5*time.Second, nil)
	lab.WaitFor(t, 10*time.Second, "dnsmasq to drop the released lease", func() bool {
		return !strings.Contains(srv.LeaseText(), l.mac.String()) && strings.Contains(srv.LogText(), "DHCPRELEASE(srv0) "+got.Addr().String())
	})
	if addrs, gw := l.uplinkState(t); len(addrs) != 0 || gw != "" {
		t.Errorf("after release up0 still has %q, route via %q", addrs, gw)
	}

	// A restart asks for the remembered address first and gets it.
	ring2 := NewRing(0, t.Logf)
	c2 := l.client(ring2)
	stop2 := startClient(t, c2)
	ev2 := waitEvent(t, ring2, 0, EventLease, 20*time.Second, nil)
	if st := c2.Status(); st.Lease == nil || st.Lease.Address != got || st.NAKs != 0 {
		t.Errorf("after restart: %+v, want %s again without NAK", st, got)
	}
	if !strings.Contains(srv.LogText(), "DHCPREQUEST(srv0) "+got.Addr().String()) {
		t.Errorf("dnsmasq log lacks the INIT-REBOOT request for %s", got)
	}
	_ = ev2
	stop2()
}

// TestDHCPServerGone runs the client against kea with a 10 s lease (T1
// 3 s, T2 6 s): with the server gone the client renews, then rebinds,
// then at expiry the address and route go and discovery starts again;
// when the server is back a new lease is applied.
func TestDHCPServerGone(t *testing.T) {
	l := newDHCPLab(t)
	kdir := filepath.Join(l.dir, "kea")
	if err := os.MkdirAll(kdir, 0o755); err != nil {
		t.Fatal(err)
	}
	srv := lab.StartKea(t, l.srv, "srv0", kdir, 10, 3, 6)
	ring := NewRing(0, t.Logf)
	c := l.client(ring)
	startClient(t, c)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("kea log:\n%s", srv.LogText())
		}
	})
	ev := waitEvent(t, ring, 0, EventLease, 30*time.Second, nil)
	st := c.Status()
	if st.Lease == nil || st.Lease.Duration != 10*time.Second || st.Lease.T1 != 3*time.Second || st.Lease.T2 != 6*time.Second {
		t.Fatalf("lease %+v, want 10s with T1 3s and T2 6s", st.Lease)
	}
	first := st.Lease.Address
	ren := waitEvent(t, ring, ev.Seq, EventRenewed, 15*time.Second, nil)

	srv.Stop(t)
	gone := time.Now()
	t.Logf("kea stopped")
	// After T1 the client renews (unicast), after T2 it rebinds
	// (broadcast), at expiry the lease is gone.
	lab.WaitFor(t, 15*time.Second, "the client to enter rebinding", func() bool { return c.Status().State == StateRebinding })
	exp := waitEvent(t, ring, ren.Seq, EventExpired, 20*time.Second, nil)
	t.Logf("lease expired %s after the server went away", time.Since(gone).Round(time.Millisecond))
	if addrs, gw := l.uplinkState(t); len(addrs) != 0 || gw != "" {
		t.Errorf("after expiry up0 still has %q, route via %q", addrs, gw)
	}
	if st := c.Status(); st.Lease != nil || st.Expiries != 1 {
		t.Errorf("after expiry: %+v", st)
	}

	lab.StartKea(t, l.srv, "srv0", kdir, 10, 3, 6)
	back := time.Now()
	nl := waitEvent(t, ring, exp.Seq, EventLease, 30*time.Second, nil)
	t.Logf("new lease %s after the server came back: %s", time.Since(back).Round(time.Millisecond), nl)
	addrs, gw := l.uplinkState(t)
	if len(addrs) != 1 || gw != "10.99.0.1" {
		t.Errorf("after the new lease up0 has %q, route via %q", addrs, gw)
	}
	t.Logf("first lease %s, new lease %s", first, c.Status().Lease.Address)
}

// TestDHCPRebindAnotherServer: the server that gave the lease is gone
// before T1 (its address too: the renewal's unicast finds nobody), and
// another server on the same link, with the same lease database, answers
// only the broadcast of REBINDING. The lease is extended there (a
// rebound, the address unchanged) and the next renewal asks the new
// server (unicast to it, accepted from it).
func TestDHCPRebindAnotherServer(t *testing.T) {
	l := newDHCPLab(t)
	kdir := filepath.Join(l.dir, "kea")
	if err := os.MkdirAll(kdir, 0o755); err != nil {
		t.Fatal(err)
	}
	// Lease 20 s, T1 3 s, T2 7 s: renewal fails from 3 s to 7 s, the
	// rebinding broadcast goes out at 7 s, well before expiry.
	first := lab.StartKea(t, l.srv, "srv0", kdir, 20, 3, 7)
	ring := NewRing(0, t.Logf)
	c := l.client(ring)
	startClient(t, c)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("kea log:\n%s", first.LogText())
		}
	})
	ev := waitEvent(t, ring, 0, EventLease, 30*time.Second, nil)
	st := c.Status()
	if st.Lease == nil || st.Lease.Server != netip.MustParseAddr("10.99.0.1") {
		t.Fatalf("lease %+v, want one from 10.99.0.1", st.Lease)
	}
	addr := st.Lease.Address

	// The first server goes away before T1, with its address; the gate
	// forgets its MAC, so the renewal's unicast reaches no one.
	first.Stop(t)
	lab.Run(t, "ip", "-n", l.srv.Name, "addr", "del", "10.99.0.1/24", "dev", "srv0")
	lab.Run(t, "ip", "-n", l.srv.Name, "addr", "add", "10.99.0.2/24", "dev", "srv0")
	lab.Run(t, "ip", "-n", l.gate.Name, "neigh", "flush", "dev", "up0")
	if time.Since(ev.Time) >= 3*time.Second {
		t.Fatalf("the first server stopped %s after the lease, after T1", time.Since(ev.Time))
	}
	// The second server: same subnet and lease database, its own
	// address (server identifier 10.99.0.2).
	second := lab.StartKea(t, l.srv, "srv0", kdir, 20, 3, 7)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("second kea log:\n%s", second.LogText())
		}
	})

	lab.WaitFor(t, 10*time.Second, "the client to try renewing", func() bool { return c.Status().State == StateRenewing })
	rb := waitEvent(t, ring, ev.Seq, EventRebound, 15*time.Second, nil)
	t.Logf("rebound %s after the lease: %s", rb.Time.Sub(ev.Time).Round(time.Millisecond), rb)
	if rb.Time.Sub(ev.Time) < 7*time.Second-500*time.Millisecond {
		t.Errorf("rebound %s after the lease, before T2 (7s): the renewal was answered", rb.Time.Sub(ev.Time))
	}
	st = c.Status()
	if st.Lease == nil || st.Lease.Address != addr || st.Lease.Server != netip.MustParseAddr("10.99.0.2") || st.Rebinds != 1 || st.Renewals != 0 {
		t.Fatalf("after rebinding: %+v (lease %+v), want %s from 10.99.0.2, 1 rebind", st, st.Lease, addr)
	}
	if addrs, _ := l.uplinkState(t); len(addrs) != 1 || addrs[0] != addr.String()+" up0:nc" {
		t.Errorf("up0 after rebinding %q, want %s", addrs, addr)
	}
	evs, _ := ring.Since(0)
	for _, e := range evs {
		if e.Kind == EventExpired || e.Kind == EventNAK || e.Kind == EventLease && e.Seq != ev.Seq {
			t.Errorf("the lease was not simply extended: %s", e)
		}
	}

	// The next renewal (T1 after the rebind) goes to the new server.
	ren := waitEvent(t, ring, rb.Seq, EventRenewed, 10*time.Second, nil)
	if st := c.Status(); st.Lease == nil || st.Lease.Address != addr || st.Lease.Server != netip.MustParseAddr("10.99.0.2") {
		t.Errorf("after renewing with the new server: %+v", st.Lease)
	}
	t.Logf("renewed with the new server: %s", ren)
}
