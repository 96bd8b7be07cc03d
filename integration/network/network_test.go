// Package network holds the QEMU integration tests of the gate's network
// half on the lab network: the baseline ruleset before any interface, the
// segment, overlay and netconf services on the image's default site (the
// demo plant), and an asset that only the gate's proxy can reach.
package network

import (
	"errors"
	"net"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/otgate/otgate/integration/internal/gatetest"
	"github.com/otgate/otgate/qemu"
	"github.com/otgate/otgate/qemu/lab"
)

// plcAddr is the default site's tank PLC (rootfs/etc/otgate/site.yaml),
// the lab plant's address.
const plcAddr = "10.77.0.20:502"

// The story of one gate between the lab's uplink and its plant: init puts
// the deny ruleset into the kernel before any interface is up; the policy,
// segment, overlay, netconf and identity services come up on the demo
// plant; the uplink gets its address by DHCP; the PLC gets an overlay
// endpoint on the gate; from the uplink side the PLC cannot be reached
// through the gate even with a route pointing at it, while the gate itself
// answers there; on the gate only the proxy's identity reaches the PLC.
func TestGateOnTheLabNetwork(t *testing.T) {
	b, img := gatetest.Image(t, "qemu-x86_64")
	if _, err := exec.LookPath("dnsmasq"); err != nil {
		t.Skip("dnsmasq not installed (make test installs it)")
	}
	ctx := gatetest.Context(t, 8*time.Minute)
	l, err := lab.New(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	gatetest.StartDHCPServer(t, l)
	plc := gatetest.Listen(t, l.Plant, plcAddr)

	state := t.TempDir()
	vm := qemu.StartT(t, b, img,
		qemu.WithLab(l),
		qemu.WithDisk(filepath.Join(state, "perm.raw"), 256<<20),
		qemu.WithTPM(filepath.Join(state, "tpm")),
		qemu.WithTimeout(6*time.Minute),
	)
	gatetest.MustSee(t, vm, "init: firewall: baseline deny ruleset installed before any interface is up (uplink eth0: tcp 8443,802, dhcp; downlinks eth1")
	t.Logf("boot: %s", gatetest.MustSee(t, vm, "init: ready ("))
	for _, svc := range []string{"policy done", "segment ready", "overlay ready", "netconf ready", "identity ready", "trust done"} {
		gatetest.MustSee(t, vm, "init: "+svc+" (")
	}
	gatetest.MustSee(t, vm, regexp.MustCompile(`^policy: site: applied demo-plant from /etc/otgate/site.cbor: 1 zones, 2 assets`))
	gatetest.MustSee(t, vm, regexp.MustCompile(`^segment: segment: ready: 2 assets, 0 exceptions`))

	// Order: modules, then the baseline, then the first interface up.
	lines := vm.Lines()
	modules := index(lines, regexp.MustCompile(`^init: loaded \d+ of \d+ modules`))
	baseline := index(lines, regexp.MustCompile(`^init: firewall: baseline deny ruleset installed`))
	firstUp := index(lines, regexp.MustCompile(`^netconf: .*netconf: (eth0|eth1): up$`))
	firstService := index(lines, regexp.MustCompile(`^(policy|segment|overlay|netconf|identity|steady): `))
	if modules < 0 || baseline < modules || firstUp < baseline || firstService < baseline {
		t.Errorf("console order: modules at %d, baseline at %d, first interface up at %d, first service output at %d; want modules < baseline < the rest",
			modules, baseline, firstUp, firstService)
	}

	// The uplink is configured by DHCP from the lab.
	gatetest.MustSee(t, vm, regexp.MustCompile(`^netconf: .*netconf: event .* lease on eth0 ip `+regexp.QuoteMeta(lab.GateUplinkIP)+`/24: server 192\.0\.2\.1`))

	// Overlay: the PLC's endpoint is allocated and sits on the gate's
	// overlay interface.
	alloc := gatetest.MustSee(t, vm, regexp.MustCompile(`^overlay: .*overlay: plc-tank \(zone cell-1\) -> (100\.64\.\d+\.\d+)$`))
	endpoint := regexp.MustCompile(`(100\.64\.\d+\.\d+)$`).FindString(alloc)
	gatetest.MustSee(t, vm, "netdump: testsvc: netdump")
	link := gatetest.MustSee(t, vm, regexp.MustCompile(`^netdump: testsvc: link otg-overlay `))
	if !strings.Contains(link, " "+endpoint+"/32") {
		t.Errorf("overlay endpoint %s of plc-tank is not on the gate's overlay interface: %q", endpoint, link)
	}
	gatetest.MustSee(t, vm, regexp.MustCompile(`^netdump: testsvc: link eth0 device up `+regexp.QuoteMeta(lab.GateUplinkIP)+`/24`))
	gatetest.MustSee(t, vm, regexp.MustCompile(`^netdump: testsvc: link eth1 device up `+regexp.QuoteMeta(lab.GateDownlinkIP)+`/24`))
	gatetest.MustSee(t, vm, regexp.MustCompile(`^netdump: testsvc: nft table inet otgate chains .*forward\(forward, drop\)`))
	// IPv6 is off on every interface from boot (the kernel command line):
	// no link-local address, so no MLD, router solicitation or DAD of the
	// gate's own on either side.
	for _, name := range []string{"lo", "eth0", "eth1", "otg-overlay"} {
		gatetest.MustSee(t, vm, "netdump: testsvc: ipv6 "+name+" disable_ipv6=1 addresses []")
	}
	// segment owns IPv4 forwarding: on only while the applied policy routes
	// (an active exception or a monitor zone). The demo site has one
	// enforce zone and no exception, so forwarding stays off.
	gatetest.MustSee(t, vm, "segment: segment: IPv4 forwarding off: 0 exceptions, 0 monitor zones")
	gatetest.MustSee(t, vm, "netdump: testsvc: sysctl net.ipv4.ip_forward=0")
	// Strict reverse-path filtering all the same (init at boot, segment
	// keeps it): the interfaces, made after it, inherit "default".
	gatetest.MustSee(t, vm, "init: firewall: strict reverse-path filtering on (rp_filter 1)")
	for _, iface := range []string{"all", "default", "eth0", "eth1"} {
		gatetest.MustSee(t, vm, "netdump: testsvc: sysctl net.ipv4.conf."+iface+".rp_filter=1")
	}

	// On the gate: root is dropped toward the PLC, the proxy's identity
	// gets through (the policy's per-asset allow is in force).
	asRoot := gatetest.MustSee(t, vm, "netdump: testsvc: probe "+plcAddr+" as root: ")
	asProxy := gatetest.MustSee(t, vm, "netdump: testsvc: probe "+plcAddr+" as the proxy ")
	if !strings.Contains(asRoot, "blocked") || !strings.HasSuffix(asProxy, ": connected") {
		t.Errorf("from the gate: %q, %q; want root blocked and the proxy connected", asRoot, asProxy)
	}
	// The proxy runs as uid 101 with CAP_NET_RAW (bit 13) for SO_MARK,
	// and nothing else it gives: its seccomp filter denies packet and raw
	// sockets, IP_TRANSPARENT and io_uring. The root services that read
	// the network keep only what they use: netconf CAP_NET_ADMIN,
	// CAP_NET_RAW and CAP_NET_BIND_SERVICE (12, 13, 10: addresses and
	// routes, DHCP and ARP on packet sockets, port 68), timesync
	// CAP_SYS_TIME (25), overlay CAP_NET_ADMIN, identity none (once its
	// socket is given to the proxy's group), effective and permitted,
	// nothing inheritable or ambient, no_new_privs, and a seccomp filter
	// that keeps each from signalling or tracing another process
	// (internal/sandbox).
	gatetest.MustSee(t, vm, "netdump: testsvc: process otgate-proxy uid 101: Seccomp 2, NoNewPrivs 1, CapEff 0000000000002000, CapPrm 0000000000002000, CapAmb 0000000000002000")
	gatetest.MustSee(t, vm, "netdump: testsvc: process otgate-netconf uid 0: Seccomp 2, NoNewPrivs 1, CapEff 0000000000003400, CapPrm 0000000000003400, CapAmb 0000000000000000")
	gatetest.MustSee(t, vm, "netdump: testsvc: process otgate-timesync uid 0: Seccomp 2, NoNewPrivs 1, CapEff 0000000002000000, CapPrm 0000000002000000, CapAmb 0000000000000000")
	gatetest.MustSee(t, vm, "netdump: testsvc: process otgate-overlay uid 0: Seccomp 2, NoNewPrivs 1, CapEff 0000000000001000, CapPrm 0000000000001000, CapAmb 0000000000000000")
	gatetest.MustSee(t, vm, "netdump: testsvc: process otgate-identity uid 0: Seccomp 2, NoNewPrivs 1, CapEff 0000000000000000, CapPrm 0000000000000000, CapAmb 0000000000000000")
	gatetest.MustSee(t, vm, "netdump: testsvc: netdump end")
	// Each service confined itself to its files (Landlock,
	// internal/sandbox): the lists as the image's arguments make them.
	// None may write /run/otgate itself (init's socket, identity's), only
	// its own directory there.
	for svc, want := range map[string]string{
		"identity": "read /proc /etc/localtime; write /perm/identity",
		"segment":  "read /perm/policy /etc/otgate/boot.cbor /perm/overlay /etc/localtime; write /perm/segment /run/otgate/segment /proc/sys/net/ipv4/ip_forward /proc/sys/net/ipv4/conf",
		"overlay":  "read /perm/policy /etc/localtime; write /perm/overlay /run/otgate/overlay",
		"netconf":  "read /perm/policy; write /run/otgate/netconf /etc/resolv.conf /perm/netconf /proc/sys/net/ipv4/conf",
		"timesync": "read /perm/policy /etc /dev/rtc0; write /perm/timesync /run/otgate/timesync",
		"proxy":    "read /perm/policy /etc /perm/overlay; write /perm/proxy /perm/audit /run/otgate/proxy",
	} {
		tag := svc // the service's own prefix after init's
		if svc == "proxy" {
			tag = "otgate-proxy"
		}
		re := regexp.MustCompile(svc + `: (?:[0-9/]+ [0-9:]+ )?` + tag + `: files confined: (.*)`)
		if got := gatetest.Submatch(t, vm, re); got != want {
			t.Errorf("%s: files confined: %s\nwant %s", svc, got, want)
		}
	}
	if n := plc.Accepted(); n < 1 {
		t.Errorf("the PLC saw %d connections; the proxy's probe should have reached it", n)
	}

	// From the uplink side, with a route to the plant through the gate:
	// the gate answers for itself on its listener port (the proxy's, open
	// in the ruleset: connected, or refused while nothing listens) and
	// drops the rest, but never forwards.
	addRoute(t, l, lab.PlantPrefix, lab.GateUplinkIP)
	before := plc.Accepted()
	if err := gatetest.Dial(l.Uplink, lab.GateUplinkIP+":8443"); err != nil && !isRefused(err) {
		t.Errorf("uplink -> gate tcp/8443: %v; want an answer (connected or refused): the gate's listener port is open", err)
	}
	if err := gatetest.Dial(l.Uplink, lab.GateUplinkIP+":22"); err == nil || isRefused(err) {
		t.Errorf("uplink -> gate tcp/22: %v; want a silent drop (timeout)", err)
	}
	if err := gatetest.Dial(l.Uplink, plcAddr); err == nil {
		t.Errorf("uplink -> PLC %s through the gate: connected; the gate must never forward", plcAddr)
	} else {
		t.Logf("uplink -> PLC through the gate: %v", err)
	}
	if n := plc.Accepted(); n != before {
		t.Errorf("the PLC accepted %d connections from the uplink side", n-before)
	}
	// The PLC itself is up: the plant reaches it.
	if err := gatetest.Dial(l.Plant, plcAddr); err != nil {
		t.Errorf("plant -> PLC: %v (the asset is not listening; the checks above prove nothing)", err)
	}

	// ARP: each interface answers only for its own addresses (init:
	// arp_ignore 1, arp_announce 2 on "all"). A plant device that asks for
	// the gate's uplink address, which is not on its side, learns nothing;
	// the gate's address on the plant's side it does learn.
	if got := plantResolves(t, l, lab.GateDownlinkIP); got == "" {
		t.Errorf("the plant did not learn the MAC of the gate's own address on its side (%s): the ARP check below proves nothing", lab.GateDownlinkIP)
	}
	if got := plantResolves(t, l, lab.GateUplinkIP); got != "" {
		t.Errorf("the gate answered the plant's ARP for its uplink address %s with %s: an OT device learns the gate's addresses on other sides", lab.GateUplinkIP, got)
	}
	gatetest.MustSee(t, vm, "init: firewall: ARP answered only for the asking interface's own addresses (arp_ignore 1, arp_announce 2)")
	gatetest.MustSee(t, vm, "netdump: testsvc: sysctl net.ipv4.conf.all.arp_ignore=1")
	gatetest.MustSee(t, vm, "netdump: testsvc: sysctl net.ipv4.conf.all.arp_announce=2")

	gatetest.PowerOff(t, vm)
}

// plantResolves has the plant ask for ip on its own link (a host route
// through its interface, then a connection attempt) and returns the MAC
// its neighbour table learned, "" when none.
func plantResolves(t *testing.T, l *lab.Lab, ip string) string {
	t.Helper()
	dst := &net.IPNet{IP: net.ParseIP(ip).To4(), Mask: net.CIDRMask(32, 32)}
	err := l.Plant.Do(func() error {
		link, err := netlink.LinkByName(lab.PlantIface)
		if err != nil {
			return err
		}
		return netlink.RouteReplace(&netlink.Route{Dst: dst, LinkIndex: link.Attrs().Index, Scope: netlink.SCOPE_LINK})
	})
	if err != nil {
		t.Fatalf("host route to %s on the plant's link: %v", ip, err)
	}
	_ = gatetest.Dial(l.Plant, net.JoinHostPort(ip, "8443")) // refused, dropped or connected: the ARP is what counts
	var mac string
	err = l.Plant.Do(func() error {
		link, err := netlink.LinkByName(lab.PlantIface)
		if err != nil {
			return err
		}
		neighs, err := netlink.NeighList(link.Attrs().Index, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		for _, n := range neighs {
			if n.IP.Equal(dst.IP) && n.State&(netlink.NUD_REACHABLE|netlink.NUD_STALE|netlink.NUD_DELAY|netlink.NUD_PROBE) != 0 && len(n.HardwareAddr) > 0 {
				mac = n.HardwareAddr.String()
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("the plant's neighbour table: %v", err)
	}
	return mac
}

func addRoute(t *testing.T, l *lab.Lab, prefix, via string) {
	t.Helper()
	_, dst, err := net.ParseCIDR(prefix)
	if err != nil {
		t.Fatal(err)
	}
	err = l.Uplink.Do(func() error {
		return netlink.RouteAdd(&netlink.Route{Dst: dst, Gw: net.ParseIP(via)})
	})
	if err != nil {
		t.Fatalf("route %s via %s in the lab namespace: %v", prefix, via, err)
	}
}

func isRefused(err error) bool {
	return err != nil && errors.Is(err, syscall.ECONNREFUSED)
}

func index(lines []string, re *regexp.Regexp) int {
	for i, l := range lines {
		if re.MatchString(l) {
			return i
		}
	}
	return -1
}
