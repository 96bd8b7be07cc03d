package netconf

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/otgate/otgate/services/netconf/internal/lab"
)

// leftByDeadRun puts on up0 what a run that died holding a lease of
// addr leaves there (bind's own apply: the address with the rest of its
// lifetime, the default route via the server's router) and remembers
// addr as the hint.
func leftByDeadRun(t *testing.T, l *dhcpLab, c *DHCPClient, addr netip.Prefix) {
	t.Helper()
	c.hw = l.mac
	c.saveHint(addr.Addr())
	up := &uplinkLink{h: l.gate.Handle, ns: l.gate.NS, name: "up0", proto: unix.RTPROT_DHCP, resolver: c.Resolver, source: "dead run"}
	if _, err := up.apply(UplinkConfig{Address: addr, Lifetime: 100 * time.Second, Gateway: netip.MustParseAddr("10.99.0.1")}); err != nil {
		t.Fatal(err)
	}
	if addrs, gw := l.uplinkState(t); len(addrs) != 1 || addrs[0] != addr.String()+" up0:nc" || gw != "10.99.0.1" {
		t.Fatalf("left on up0: %q via %q", addrs, gw)
	}
}

// watchUplink follows the kernel's address and route notifications of
// the gate namespace until the returned stop, which says how often addr
// was removed from up0 or a dhcp default route deleted, and how often
// addr was added or updated (the ACK's new lifetime: proof that the
// notifications arrive).
func watchUplink(t *testing.T, l *dhcpLab, addr netip.Prefix) (stop func() (removed, updated int)) {
	t.Helper()
	addrs := make(chan netlink.AddrUpdate, 64)
	routes := make(chan netlink.RouteUpdate, 64)
	done := make(chan struct{})
	if err := netlink.AddrSubscribeAt(l.gate.NS, addrs, done); err != nil {
		t.Fatal(err)
	}
	if err := netlink.RouteSubscribeAt(l.gate.NS, routes, done); err != nil {
		close(done)
		t.Fatal(err)
	}
	var removed, updated int
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for addrs != nil || routes != nil {
			select {
			case u, ok := <-addrs:
				if !ok {
					addrs = nil
					continue
				}
				if u.LinkAddress.String() != addr.String() {
					continue
				}
				if u.NewAddr {
					updated++
				} else {
					removed++
				}
			case u, ok := <-routes:
				if !ok {
					routes = nil
					continue
				}
				if u.Type == unix.RTM_DELROUTE && (u.Dst == nil || u.Dst.String() == "0.0.0.0/0") && u.Protocol == unix.RTPROT_DHCP {
					removed++
				}
			}
		}
	}()
	return func() (int, int) {
		time.Sleep(100 * time.Millisecond) // the last notifications
		close(done)
		wg.Wait()
		return removed, updated
	}
}

// A netconf run that dies holding a lease (a crash, a kill, init
// restarting it) leaves its address and default route in the kernel. The
// next run keeps them while INIT-REBOOT asks for the address again: the
// uplink never loses its address or route (the proxy's sessions over it
// go on), and the ACK renews it in place. An address the server refuses
// is removed before discovery finds a new one.
func TestDHCPRestartKeepsTheAddressADeadRunLeft(t *testing.T) {
	t.Run("given back", func(t *testing.T) {
		l := newDHCPLab(t)
		lab.StartDnsmasq(t, l.srv, "srv0", l.dir)
		ring := NewRing(0, t.Logf)
		c := l.client(ring)
		var logs syncLines
		c.Logf = logs.add
		addr := netip.MustParsePrefix("10.99.0.120/24")
		leftByDeadRun(t, l, c, addr)
		stopWatch := watchUplink(t, l, addr)
		startClient(t, c)
		waitEvent(t, ring, 0, EventLease, 20*time.Second, nil)
		removed, updated := stopWatch()
		if updated == 0 {
			t.Fatalf("no notification of %s renewed on up0: the watch saw nothing", addr)
		}
		if removed != 0 {
			t.Errorf("%s or the default route left up0 %d times while the new run got its lease", addr, removed)
		}
		if st := c.Status(); st.Lease == nil || st.Lease.Address != addr || st.NAKs != 0 {
			t.Errorf("status %+v, want the lease of %s, no NAK", st, addr)
		}
		if addrs, gw := l.uplinkState(t); len(addrs) != 1 || addrs[0] != addr.String()+" up0:nc" || gw != "10.99.0.1" {
			t.Errorf("up0: %q via %q", addrs, gw)
		}
		if !logs.has("netconf: dhcp on up0: keeping 10.99.0.120/24 from the previous run while asking for it again") {
			t.Errorf("no keeping line in %q", logs.all())
		}
	})
	t.Run("refused", func(t *testing.T) {
		l := newDHCPLab(t)
		lab.StartDnsmasq(t, l.srv, "srv0", l.dir)
		ring := NewRing(0, t.Logf)
		c := l.client(ring)
		var logs syncLines
		c.Logf = logs.add
		stale := netip.MustParsePrefix("10.99.0.250/24") // outside dnsmasq's range: NAK
		leftByDeadRun(t, l, c, stale)
		startClient(t, c)
		nak := waitEvent(t, ring, 0, EventNAK, 20*time.Second, nil)
		ev := waitEvent(t, ring, nak.Seq, EventLease, 30*time.Second, nil)
		got := c.Status().Lease.Address
		if got == stale {
			t.Fatalf("lease %s: %s", got, ev)
		}
		if addrs, _ := l.uplinkState(t); len(addrs) != 1 || addrs[0] != got.String()+" up0:nc" {
			t.Errorf("up0 %q, want only the new lease %s", addrs, got)
		}
		if !logs.has("netconf: dhcp on up0: the address of the previous run was not given back; removing it") {
			t.Errorf("no removal line in %q", logs.all())
		}
	})
}

// syncLines collects log lines from the client's goroutine.
type syncLines struct {
	mu    sync.Mutex
	lines []string
}

func (s *syncLines) add(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lines = append(s.lines, strings.TrimSpace(fmt.Sprintf(format, args...)))
}

func (s *syncLines) has(line string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.lines {
		if l == line {
			return true
		}
	}
	return false
}

func (s *syncLines) all() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.lines...)
}
