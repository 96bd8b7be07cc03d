package netconf

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/otgate/otgate/services/netconf/internal/lab"
	"github.com/otgate/otgate/site"
)

// uplinkPolicy is a one-zone policy (on the downlink eth1) with an
// uplink section (none when uplink is "").
func uplinkPolicy(uplink string) string {
	p := "zones:\n  - {name: cell-1, owner: ot, mode: enforce, interface: eth1, subnet: 10.77.0.0/24, gate_address: 10.77.0.1}\n"
	if uplink != "" {
		p += "uplink:\n" + uplink
	}
	return p
}

const staticSite = "  mode: static\n  address: 10.99.0.5/24\n  gateway: 10.99.0.1\n  dns: [10.99.0.53]\n"

// runUplinkService runs a service on the lab's uplink up0 (and a
// downlink eth1) with the policy in pdir and the uplink flags up (Mode
// "": the site file's), until it is ready; stop ends it.
func runUplinkService(t *testing.T, l *dhcpLab, pdir string, up Uplink, log *syncLog) (svc *Service, stop func()) {
	t.Helper()
	if _, err := l.gate.Handle.LinkByName("eth1"); err != nil {
		lab.Veth(t, l.gate, "eth1", l.srv, "ot1") // no dummy module on every host
	}
	up.Name = "up0"
	cfg := Config{
		Uplink: up, Downlinks: []string{"eth1"},
		PolicyPath: filepath.Join(pdir, site.AppliedFile), SocketPath: filepath.Join(l.dir, "nc.sock"),
		Resolver: &Resolver{Path: filepath.Join(l.dir, "resolv.conf")}, HintPath: filepath.Join(l.dir, "hint.cbor"),
		AbsentAfter: time.Minute, Poll: time.Hour, Repair: time.Hour, ReadyWait: 20 * time.Second,
		BackoffMin: time.Second, BackoffMax: 2 * time.Second, RetryMin: time.Second,
	}
	svc, err := New(cfg, l.gate.Handle, log.logf)
	if err != nil {
		t.Fatal(err)
	}
	svc.NS = l.gate.NS
	ready := make(chan struct{})
	svc.Notify = func() error { close(ready); return nil }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
	}
	t.Cleanup(stop)
	select {
	case <-ready:
	case <-time.After(30 * time.Second):
		t.Fatal("not ready")
	}
	return svc, stop
}

// queryStatus reads the status through the service's socket, as
// `otgate netconf status` does.
func queryStatus(t *testing.T, sock string) *Status {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := Query(ctx, sock, Request{Op: OpStatus})
	if err != nil {
		t.Fatal(err)
	}
	return resp.Status
}

func reload(t *testing.T, svc *Service) {
	t.Helper()
	syncs := svc.Status().Syncs
	svc.Reload()
	lab.WaitFor(t, 10*time.Second, "the reload", func() bool { return svc.Status().Syncs > syncs })
}

// defaultRoute is up0's default route: gateway and protocol ("" if none).
func defaultRoute(t *testing.T, h *netlink.Handle) (gw string, proto netlink.RouteProtocol) {
	t.Helper()
	rs, err := h.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if r.Dst == nil || r.Dst.String() == "0.0.0.0/0" {
			return r.Gw.String(), r.Protocol
		}
	}
	return "", 0
}

// TestServiceStaticUplinkFromSite: with no uplink flags the site file's
// static uplink is configured (address, default route, DNS) and reached
// from the uplink side. A pushed policy that switches to DHCP changes
// nothing live: the change is pending (status over the socket, log) until
// the next restart, which then takes a DHCP lease (the default without an
// uplink section) and drops the static route.
func TestServiceStaticUplinkFromSite(t *testing.T) {
	l := newDHCPLab(t)
	pdir := filepath.Join(l.dir, "policy")
	storePolicy(t, pdir, uplinkPolicy(staticSite))
	log := &syncLog{t: t}
	svc, stop := runUplinkService(t, l, pdir, Uplink{}, log)

	st := queryStatus(t, svc.SocketPath)
	if u := st.Uplink; u.Mode != UplinkStatic || u.State != "configured" || u.Address != "10.99.0.5/24" || u.Gateway != "10.99.0.1" || u.Source != "from the site file" || u.Pending != "" {
		t.Errorf("uplink status %+v", u)
	}
	if len(st.Warnings) != 0 || st.Error != "" {
		t.Errorf("warnings %q, error %q", st.Warnings, st.Error)
	}
	if a := linkAddrs(t, l.gate.Handle, "up0"); !reflect.DeepEqual(a, []string{"10.99.0.5/24 up0:nc"}) {
		t.Errorf("up0 %q", a)
	}
	if gw, proto := defaultRoute(t, l.gate.Handle); gw != "10.99.0.1" || proto != unix.RTPROT_STATIC {
		t.Errorf("default route via %q protocol %d, want 10.99.0.1 static", gw, proto)
	}
	if b, _ := os.ReadFile(filepath.Join(l.dir, "resolv.conf")); !strings.Contains(string(b), "nameserver 10.99.0.53\n") {
		t.Errorf("resolv.conf:\n%s", b)
	}
	if !answers(l.srv, "10.99.0.5") {
		t.Error("the uplink side does not reach the gate on 10.99.0.5")
	}
	if !log.has("netconf: uplink up0: static 10.99.0.5/24 via 10.99.0.1, dns 10.99.0.53 (from the site file)") {
		t.Error("no log line naming the uplink's configuration and its source")
	}

	// The policy now says DHCP (no uplink section): pending, not applied.
	storePolicy(t, pdir, uplinkPolicy(""))
	reload(t, svc)
	const pending = "uplink change pending: static 10.99.0.5/24 via 10.99.0.1, dns 10.99.0.53 -> dhcp; takes effect at the next restart"
	st = queryStatus(t, svc.SocketPath)
	if st.Uplink.Pending != pending || !reflect.DeepEqual(st.Warnings, []string{pending}) {
		t.Errorf("pending %q, warnings %q", st.Uplink.Pending, st.Warnings)
	}
	if !log.has("netconf: " + pending) {
		t.Error("the pending change was not logged")
	}
	if a := linkAddrs(t, l.gate.Handle, "up0"); !reflect.DeepEqual(a, []string{"10.99.0.5/24 up0:nc"}) || st.Uplink.Mode != UplinkStatic {
		t.Errorf("a pushed uplink change was applied live: up0 %q, mode %s", a, st.Uplink.Mode)
	}

	// The restart takes it: DHCP from dnsmasq, the static route gone.
	srv := lab.StartDnsmasq(t, l.srv, "srv0", l.dir)
	stop()
	log2 := &syncLog{t: t}
	svc, _ = runUplinkService(t, l, pdir, Uplink{}, log2)
	lab.WaitFor(t, 20*time.Second, "a DHCP lease", func() bool { return queryStatus(t, svc.SocketPath).Uplink.State == "bound" })
	st = queryStatus(t, svc.SocketPath)
	if u := st.Uplink; u.Mode != UplinkDHCP || u.Pending != "" || u.Source != "from the site file" || len(st.Warnings) != 0 {
		t.Errorf("after the restart: uplink %+v, warnings %q", u, st.Warnings)
	}
	if a := linkAddrs(t, l.gate.Handle, "up0"); len(a) != 1 || a[0] == "10.99.0.5/24 up0:nc" {
		t.Errorf("up0 after the restart %q", a)
	}
	if gw, proto := defaultRoute(t, l.gate.Handle); gw != "10.99.0.1" || proto != unix.RTPROT_DHCP {
		t.Errorf("default route via %q protocol %d, want 10.99.0.1 dhcp", gw, proto)
	}
	if !log2.has("removed the default route of the previous static configuration") {
		t.Error("the static route's removal was not logged")
	}
	_ = srv
}

// TestServiceDHCPUplinkByDefault: a policy without an uplink section and
// no uplink flags: DHCP. A pushed static uplink is pending; the lease
// stays.
func TestServiceDHCPUplinkByDefault(t *testing.T) {
	l := newDHCPLab(t)
	lab.StartDnsmasq(t, l.srv, "srv0", l.dir)
	pdir := filepath.Join(l.dir, "policy")
	storePolicy(t, pdir, uplinkPolicy(""))
	log := &syncLog{t: t}
	svc, _ := runUplinkService(t, l, pdir, Uplink{}, log)
	lab.WaitFor(t, 20*time.Second, "a DHCP lease", func() bool { return queryStatus(t, svc.SocketPath).Uplink.State == "bound" })
	st := queryStatus(t, svc.SocketPath)
	if u := st.Uplink; u.Mode != UplinkDHCP || u.Source != "from the site file" || u.DHCP == nil || u.DHCP.Lease == nil || len(st.Warnings) != 0 {
		t.Fatalf("uplink %+v, warnings %q", u, st.Warnings)
	}
	leased := st.Uplink.Address

	storePolicy(t, pdir, uplinkPolicy(staticSite))
	reload(t, svc)
	const pending = "uplink change pending: dhcp -> static 10.99.0.5/24 via 10.99.0.1, dns 10.99.0.53; takes effect at the next restart"
	st = queryStatus(t, svc.SocketPath)
	if st.Uplink.Pending != pending || !reflect.DeepEqual(st.Warnings, []string{pending}) || !log.has("netconf: "+pending) {
		t.Errorf("pending %q, warnings %q", st.Uplink.Pending, st.Warnings)
	}
	if st.Uplink.State != "bound" || st.Uplink.Address != leased {
		t.Errorf("the lease changed: %+v (had %s)", st.Uplink, leased)
	}

	// Back to what is in effect: nothing pending any more.
	storePolicy(t, pdir, uplinkPolicy("  mode: dhcp\n"))
	reload(t, svc)
	if st := queryStatus(t, svc.SocketPath); st.Uplink.Pending != "" || len(st.Warnings) != 0 {
		t.Errorf("after withdrawing: pending %q, warnings %q", st.Uplink.Pending, st.Warnings)
	}
	if !log.has("netconf: uplink change withdrawn") {
		t.Error("the withdrawal was not logged")
	}
}

// TestServiceUplinkFlagOverride: the flags' static uplink wins over the
// site file's, with a warning naming both; a site file that agrees
// silences it, and the flags' mode none (a development host) never
// warns and leaves the uplink alone.
func TestServiceUplinkFlagOverride(t *testing.T) {
	l := newDHCPLab(t)
	pdir := filepath.Join(l.dir, "policy")
	storePolicy(t, pdir, uplinkPolicy(staticSite))
	log := &syncLog{t: t}
	flags := Uplink{Mode: UplinkStatic, Address: netip.MustParsePrefix("10.99.0.7/24"), Gateway: netip.MustParseAddr("10.99.0.1")}
	svc, stop := runUplinkService(t, l, pdir, flags, log)
	const warn = "uplink up0: static 10.99.0.7/24 via 10.99.0.1 from the flags overrides the site file's static 10.99.0.5/24 via 10.99.0.1, dns 10.99.0.53"
	st := queryStatus(t, svc.SocketPath)
	if u := st.Uplink; u.Address != "10.99.0.7/24" || u.Source != "from the flags" || u.Pending != "" {
		t.Errorf("uplink %+v", u)
	}
	if !reflect.DeepEqual(st.Warnings, []string{warn}) || !log.has("netconf: "+warn) {
		t.Errorf("warnings %q", st.Warnings)
	}
	if a := linkAddrs(t, l.gate.Handle, "up0"); !reflect.DeepEqual(a, []string{"10.99.0.7/24 up0:nc"}) {
		t.Errorf("up0 %q", a)
	}

	// The site file now says what the flags say: no warning.
	storePolicy(t, pdir, uplinkPolicy("  mode: static\n  address: 10.99.0.7/24\n  gateway: 10.99.0.1\n"))
	reload(t, svc)
	if st := queryStatus(t, svc.SocketPath); len(st.Warnings) != 0 || st.Uplink.Pending != "" {
		t.Errorf("agreeing site file: warnings %q, pending %q", st.Warnings, st.Uplink.Pending)
	}
	stop()

	// Mode none: not managed, no warning, up0 as it was left.
	svc, _ = runUplinkService(t, l, pdir, Uplink{Mode: UplinkNone}, log)
	if st := queryStatus(t, svc.SocketPath); st.Uplink.State != "not managed" || len(st.Warnings) != 0 {
		t.Errorf("mode none: uplink %+v, warnings %q", st.Uplink, st.Warnings)
	}
}
