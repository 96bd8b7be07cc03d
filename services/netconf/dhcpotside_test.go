package netconf

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/otgate/otgate/services/netconf/internal/lab"
	"github.com/otgate/otgate/site"
)

// readResolv is the lab's resolv.conf.
func readResolv(t *testing.T, l *dhcpLab) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(l.dir, "resolv.conf"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// A lease (unauthenticated: anyone on the IT side may answer) naming DNS
// servers in a zone's subnet and in the overlay prefix: those are not
// written to resolv.conf, each said in the log and the status, and the
// uplink-side one is used; the lease itself is taken. A policy pushed
// later that puts a zone around the remaining one takes it out of
// resolv.conf while the lease is held, and says none is left.
func TestServiceLeaseDNSOnTheOTSideNotUsed(t *testing.T) {
	l := newDHCPLab(t)
	lab.StartDnsmasq(t, l.srv, "srv0", l.dir, "--dhcp-option=option:dns-server,10.77.0.53,100.64.0.53,10.50.0.53")
	pdir := filepath.Join(l.dir, "policy")
	storePolicy(t, pdir, uplinkPolicy("")) // zone cell-1 10.77.0.0/24, the default overlay prefix
	log := &syncLog{t: t}
	svc, _ := runUplinkService(t, l, pdir, Uplink{}, log)
	lab.WaitFor(t, 20*time.Second, "a DHCP lease", func() bool { return queryStatus(t, svc.SocketPath).Uplink.State == "bound" })

	resolv := readResolv(t, l)
	if !strings.Contains(resolv, "nameserver 10.50.0.53\n") || strings.Contains(resolv, "10.77.0.53") || strings.Contains(resolv, "100.64.0.53") {
		t.Errorf("resolv.conf:\n%s", resolv)
	}
	for _, want := range []string{
		`netconf: dhcp on up0: server 10.99.0.1: DNS server 10.77.0.53 of the lease is in zone "cell-1" subnet 10.77.0.0/24: not used (the gate resolves names on the uplink side only)`,
		`netconf: dhcp on up0: server 10.99.0.1: DNS server 100.64.0.53 of the lease is in the overlay prefix 100.64.0.0/16: not used`,
	} {
		if !log.has(want) {
			t.Errorf("no log line %q", want)
		}
	}
	st := queryStatus(t, svc.SocketPath)
	lease := st.Uplink.DHCP.Lease
	if lease == nil || !slices.Equal(lease.DNS, []netip.Addr{netip.MustParseAddr("10.50.0.53")}) || len(lease.NotUsed) != 2 {
		t.Fatalf("status lease %+v", lease)
	}
	leased := st.Uplink.Address

	// A zone now covers 10.50.0.53: dropped from resolv.conf while the
	// lease is held (it does not overlap the leased subnet).
	storePolicy(t, pdir, uplinkPolicy("")+"  - {name: cell-2, owner: ot, mode: enforce, interface: eth1, subnet: 10.50.0.0/24, gate_address: 10.50.0.1}\n")
	reload(t, svc)
	lab.WaitFor(t, 10*time.Second, "resolv.conf without 10.50.0.53", func() bool { return !strings.Contains(readResolv(t, l), "10.50.0.53") })
	if resolv := readResolv(t, l); strings.Contains(resolv, "nameserver") {
		t.Errorf("resolv.conf after the zone was added:\n%s", resolv)
	}
	for _, want := range []string{
		`DNS server 10.50.0.53 of the lease is in zone "cell-2" subnet 10.50.0.0/24: not used`,
		"no DNS server of the lease is left: resolv.conf names none",
	} {
		if !log.has(want) {
			t.Errorf("no log line %q", want)
		}
	}
	// The status follows resolv.conf (the lease's record is updated
	// after the file is written): wait for it, then check it.
	lab.WaitFor(t, 10*time.Second, "the status's lease without 10.50.0.53", func() bool {
		l := queryStatus(t, svc.SocketPath).Uplink.DHCP.Lease
		return l != nil && len(l.DNS) == 0
	})
	st = queryStatus(t, svc.SocketPath)
	if u := st.Uplink; u.State != "bound" || u.Address != leased || len(u.DHCP.Lease.DNS) != 0 ||
		!slices.ContainsFunc(u.DHCP.Lease.NotUsed, func(s string) bool {
			return strings.HasPrefix(s, `DNS server 10.50.0.53 of the lease is in zone "cell-2"`)
		}) {
		t.Errorf("after the zone was added: uplink %+v, lease %+v (had %s)", u, u.DHCP.Lease, leased)
	}
}

// A lease whose server identifier is in a zone's subnet is refused:
// renewals and the release are sent to that address by unicast, which
// the gate would route out of its downlink to an OT device. The offer
// is passed over with an event naming the zone; nothing reaches up0.
func TestDHCPRefusesServerIdentifierOnTheOTSide(t *testing.T) {
	l := newDHCPLab(t)
	kdir := filepath.Join(l.dir, "kea")
	if err := os.MkdirAll(kdir, 0o755); err != nil {
		t.Fatal(err)
	}
	srv := lab.StartKea(t, l.srv, "srv0", kdir, 60, 30, 50, `{"name": "dhcp-server-identifier", "data": "10.77.0.9"}`)
	ring := NewRing(0, t.Logf)
	c := l.client(ring)
	var logged syncLog
	logged.t = t
	c.Logf = logged.logf
	zones := []site.Zone{{Name: "cell-1", Subnet: netip.MustParsePrefix("10.77.0.0/24")}}
	prot := protectedRanges(&site.Site{Zones: zones}, &Plan{})
	c.Protected = func() []Protected { return prot }
	startClient(t, c)
	ev := waitEvent(t, ring, 0, EventRefused, 30*time.Second, nil)
	if !strings.Contains(ev.Detail, `server identifier 10.77.0.9 is in zone "cell-1" subnet 10.77.0.0/24`) {
		t.Errorf("refusal event: %s", ev)
	}
	if !logged.has(`server identifier 10.77.0.9 is in zone "cell-1" subnet 10.77.0.0/24 (renewals and the release would be sent to the OT side)`) {
		t.Error("the refusal was not logged")
	}
	lab.WaitFor(t, 30*time.Second, "two refused offers", func() bool { return c.Status().Refusals >= 2 })
	if addrs, gw := l.uplinkState(t); len(addrs) != 0 || gw != "" {
		t.Errorf("up0 has addresses %v, default route %q; want none", addrs, gw)
	}
	if log := srv.LogText(); strings.Contains(log, "DHCP4_PACKET_RECEIVED") && strings.Contains(log, "DHCPREQUEST") {
		t.Errorf("a refused offer was requested:\n%s", log)
	}
}

// A lease with no DNS server left to use (and no search list) rewrites
// resolv.conf too: an earlier lease's servers must not stay there.
func TestDHCPLeaseWithoutDNSClearsResolvConf(t *testing.T) {
	l := newDHCPLab(t)
	path := filepath.Join(l.dir, "resolv.conf")
	if err := os.WriteFile(path, []byte("nameserver 10.77.0.53\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := l.client(NewRing(0, t.Logf))
	u := &uplinkLink{h: l.gate.Handle, ns: l.gate.NS, name: "up0", proto: unix.RTPROT_DHCP, resolver: c.Resolver, source: "dhcp on up0 from 10.99.0.1"}
	if _, err := u.apply(UplinkConfig{Address: netip.MustParsePrefix("10.99.0.120/24"), Lifetime: time.Minute}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); strings.Contains(string(b), "nameserver") || !strings.Contains(string(b), "otgate-netconf (dhcp on up0 from 10.99.0.1)") {
		t.Errorf("resolv.conf after a lease without DNS servers:\n%s", b)
	}
}

// The policy cannot be read when the service starts (its zones are
// unknown): the lease is still checked, against the default overlay
// prefix, the flags' downlinks and the subnets of the addresses a
// previous run left on the OT side (before, against nothing: a lease
// into a zone's subnet went on the uplink). Once the policy reads again
// its ranges replace these and the lease is taken.
func TestServiceLeaseCheckedWithPolicyUnreadable(t *testing.T) {
	l := newDHCPLab(t)
	lab.Veth(t, l.gate, "eth1", l.srv, "ot1")
	// A previous run's gate address of a zone, in the DHCP server's subnet.
	lab.Run(t, "ip", "-n", l.gate.Name, "addr", "add", "10.99.0.7/24", "dev", "eth1", "label", "eth1:nc")
	lab.StartDnsmasq(t, l.srv, "srv0", l.dir)
	pdir := filepath.Join(l.dir, "policy")
	if err := os.MkdirAll(pdir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(pdir, site.AppliedFile), []byte("not a policy"), 0o644); err != nil {
		t.Fatal(err)
	}
	log := &syncLog{t: t}
	cfg := Config{
		Uplink: Uplink{Name: "up0"}, Downlinks: []string{"eth1"},
		PolicyPath: filepath.Join(pdir, site.AppliedFile), SocketPath: filepath.Join(l.dir, "nc.sock"),
		Resolver: &Resolver{Path: filepath.Join(l.dir, "resolv.conf")}, HintPath: filepath.Join(l.dir, "hint.cbor"),
		AbsentAfter: time.Minute, Poll: time.Hour, Repair: time.Hour, ReadyWait: time.Second,
		BackoffMin: time.Second, BackoffMax: 2 * time.Second, RetryMin: time.Second,
	}
	svc, err := New(cfg, l.gate.Handle, log.logf)
	if err != nil {
		t.Fatal(err)
	}
	svc.NS = l.gate.NS
	svc.Notify = func() error { return nil }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	const refused = "refused the offer of "
	lab.WaitFor(t, 30*time.Second, "a refused offer", func() bool { return log.has(refused) })
	if !log.has("from server 10.99.0.1: leased subnet 10.99.0.0/24 overlaps the subnet of netconf's address 10.99.0.7/24 on eth1 (the policy cannot be read) 10.99.0.0/24; not requested") {
		t.Error("the refusal does not name the address left on eth1")
	}
	if addrs, gw := l.uplinkState(t); len(addrs) != 0 || gw != "" {
		t.Errorf("with the policy unreadable up0 has %v, default route %q; want none", addrs, gw)
	}

	// The policy reads again (its zone elsewhere): the reconcile removes
	// the old address, and the lease is taken.
	storePolicy(t, pdir, uplinkPolicy(""))
	svc.Reload()
	lab.WaitFor(t, 30*time.Second, "a DHCP lease", func() bool { return queryStatus(t, svc.SocketPath).Uplink.State == "bound" })
	if addrs, gw := l.uplinkState(t); len(addrs) != 1 || gw != "10.99.0.1" {
		t.Errorf("after the policy was read up0 has %v, default route %q", addrs, gw)
	}
}

// uplinkDNS keeps a lease's DNS servers on the uplink side that are a
// host's addresses, and says why each other one is not used; with no
// policy the default overlay prefix is still protected.
func TestLeaseDNSKept(t *testing.T) {
	prot := protectedRanges(nil, &Plan{Links: []LinkPlan{{Name: "eth2", Addresses: []netip.Prefix{netip.MustParsePrefix("192.168.50.1/24")}}}})
	addrs := func(ss ...string) []netip.Addr {
		var out []netip.Addr
		for _, s := range ss {
			out = append(out, netip.MustParseAddr(s))
		}
		return out
	}
	l := Lease{DNS: addrs("10.99.0.53", "100.64.1.1", "192.168.50.53", "0.0.0.0", "127.0.0.53", "255.255.255.255", "10.99.0.54")}
	l.uplinkDNS(prot)
	if !slices.Equal(l.DNS, addrs("10.99.0.53", "10.99.0.54")) {
		t.Errorf("kept %v", l.DNS)
	}
	want := []string{"100.64.1.1 of the lease is in the overlay prefix 100.64.0.0/16", "192.168.50.53 of the lease is in the subnet of downlink eth2 192.168.50.0/24",
		"0.0.0.0 of the lease: address 0.0.0.0 is in 0.0.0.0/8", "127.0.0.53 of the lease: address 127.0.0.53 is a loopback address", "255.255.255.255 of the lease: address 255.255.255.255 is reserved"}
	if len(l.NotUsed) != len(want) {
		t.Fatalf("not used: %q", l.NotUsed)
	}
	for i, w := range want {
		if !strings.Contains(l.NotUsed[i], w) {
			t.Errorf("not used[%d] = %q, want %q", i, l.NotUsed[i], w)
		}
	}
	// None left: said.
	l = Lease{DNS: addrs("100.64.1.1")}
	l.uplinkDNS(prot)
	if len(l.DNS) != 0 || len(l.NotUsed) != 2 || l.NotUsed[1] != "no DNS server of the lease is left: resolv.conf names none" {
		t.Errorf("all on the OT side: kept %v, not used %q", l.DNS, l.NotUsed)
	}
}
