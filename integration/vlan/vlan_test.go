// Package vlan holds the QEMU integration test of 802.1Q VLAN zones: a
// site with a second zone on VLAN 100 of the gate's OT downlink, an asset
// on that VLAN behind an access port of the lab's OT switch, and the
// gate's netconf, segment and overlay services on it.
package vlan

import (
	"net"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/otgate/otgate/integration/internal/gatetest"
	"github.com/otgate/otgate/qemu"
	"github.com/otgate/otgate/qemu/lab"
)

const (
	vlanID     = 100
	pressCIDR  = "10.77.100.20/24" // plc-press, cell-2 on VLAN 100
	pressAddr  = "10.77.100.20:502"
	tankAddr   = "10.77.0.20:502" // plc-tank, cell-1 untagged (the lab plant)
	gateVLANIP = "10.77.100.1"    // zone cell-2's gate_address in testdata/site-vlan.yaml
)

// The story: the operator applied a site with a second zone on VLAN 100
// of eth1 (here: written to the gate's /perm before its first boot, as
// `otgate site apply` stores it). The gate creates eth1.100 with its
// address in that zone; the press PLC on VLAN 100 (behind an access port:
// it sends and receives untagged frames) is reached from the gate by the
// proxy's identity only; and nothing crosses between VLAN 100 and the
// untagged cell: not through the gate (it never routes), not on the wire
// (the VLANs are separate segments).
func TestVLANZone(t *testing.T) {
	b, img := gatetest.Image(t, "qemu-x86_64")
	for _, bin := range []string{"dnsmasq", "mkfs.ext4"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not installed (make test installs it)", bin)
		}
	}
	ctx := gatetest.Context(t, 6*time.Minute)
	l, err := lab.New(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	press, err := l.AddVLANAccess(vlanID, pressCIDR)
	if err != nil {
		t.Fatal(err)
	}
	gatetest.StartDHCPServer(t, l)
	tank := gatetest.Listen(t, l.Plant, tankAddr)
	pressPLC := gatetest.Listen(t, press, pressAddr)

	state := t.TempDir()
	disk := gatetest.PermWithPolicy(t, state, filepath.Join("testdata", "site-vlan.yaml"))
	vm := qemu.StartT(t, b, img,
		qemu.WithLab(l),
		qemu.WithDisk(disk, 0),
		qemu.WithTPM(filepath.Join(state, "tpm")),
		qemu.WithCmdline("otgate.test.netdump_wait=eth1.100", "otgate.test.netdump_probe="+pressAddr),
		qemu.WithTimeout(5*time.Minute),
	)
	gatetest.MustSee(t, vm, regexp.MustCompile(`^init: /perm mounted \(/dev/vda, ext4, boot 1\)`))
	gatetest.MustSee(t, vm, regexp.MustCompile(`^segment: segment: ready: 2 assets, 0 exceptions`))
	gatetest.MustSee(t, vm, regexp.MustCompile(`^netconf: .*eth1\.100: created \(VLAN 100 on eth1\)`))
	gatetest.MustSee(t, vm, regexp.MustCompile(`^netconf: .*eth1\.100: added `+regexp.QuoteMeta(gateVLANIP)+`/24`))
	gatetest.MustSee(t, vm, regexp.MustCompile(`^overlay: .*overlay: plc-press \(zone cell-2\) -> 100\.64\.\d+\.\d+$`))

	// netdump, once eth1.100 has its address: the VLAN interface, and what
	// a connection from the gate to the press PLC does as root and as the
	// proxy.
	gatetest.MustSee(t, vm, "netdump: testsvc: netdump")
	link := gatetest.MustSee(t, vm, regexp.MustCompile(`^netdump: testsvc: link eth1\.100 `))
	if !strings.Contains(link, " vlan up "+gateVLANIP+"/24") {
		t.Errorf("eth1.100 on the gate: %q; want a VLAN interface, up, with %s/24", link, gateVLANIP)
	}
	asRoot := gatetest.MustSee(t, vm, "netdump: testsvc: probe "+pressAddr+" as root: ")
	asProxy := gatetest.MustSee(t, vm, "netdump: testsvc: probe "+pressAddr+" as the proxy ")
	if !strings.Contains(asRoot, "blocked") || !strings.HasSuffix(asProxy, ": connected") {
		t.Errorf("from the gate to the VLAN 100 PLC: %q, %q; want root blocked and the proxy connected", asRoot, asProxy)
	}
	gatetest.MustSee(t, vm, "netdump: testsvc: netdump end")
	if n := pressPLC.Accepted(); n != 1 {
		t.Errorf("the VLAN 100 PLC saw %d connections; want exactly the proxy's probe", n)
	}

	// Nothing crosses between the cells. Each side gets a route to the
	// other's subnet through the gate's address on its own segment: the
	// gate never forwards. And on the wire: the untagged cell, told the
	// VLAN's subnet is on its own link, finds nobody (the VLAN is another
	// segment), nor does the VLAN side for the untagged subnet.
	addRoute(t, l.Plant, "10.77.100.0/24", lab.GateDownlinkIP)
	addRoute(t, press, lab.PlantPrefix, gateVLANIP)
	tankBefore, pressBefore := tank.Accepted(), pressPLC.Accepted()
	for _, c := range []struct {
		from *lab.Namespace
		name string
		addr string
	}{{l.Plant, "untagged cell -> VLAN 100 PLC via the gate", pressAddr}, {press, "VLAN 100 -> untagged PLC via the gate", tankAddr}} {
		if err := gatetest.Dial(c.from, c.addr); err == nil {
			t.Errorf("%s: connected; the gate must never forward", c.name)
		} else {
			t.Logf("%s: %v", c.name, err)
		}
	}
	replaceRoute(t, l.Plant, "10.77.100.0/24")
	replaceRoute(t, press, lab.PlantPrefix)
	for _, c := range []struct {
		from *lab.Namespace
		name string
		addr string
	}{{l.Plant, "untagged cell -> VLAN 100 PLC on the wire", pressAddr}, {press, "VLAN 100 -> untagged PLC on the wire", tankAddr}} {
		if err := gatetest.Dial(c.from, c.addr); err == nil {
			t.Errorf("%s: connected; the VLANs leak into each other", c.name)
		}
	}
	if tank.Accepted() != tankBefore || pressPLC.Accepted() != pressBefore {
		t.Errorf("PLCs accepted connections across cells: tank %d, press %d", tank.Accepted()-tankBefore, pressPLC.Accepted()-pressBefore)
	}
	// Both PLCs are up: their own segments reach them (the checks above
	// are not passing on dead listeners).
	if err := gatetest.Dial(l.Plant, tankAddr); err != nil {
		t.Errorf("plant -> tank PLC: %v", err)
	}
	if err := gatetest.Dial(press, pressAddr); err != nil {
		t.Errorf("VLAN 100 -> press PLC: %v", err)
	}

	gatetest.PowerOff(t, vm)
}

// addRoute adds prefix via gw in ns.
func addRoute(t *testing.T, ns *lab.Namespace, prefix, gw string) {
	t.Helper()
	_, dst, err := net.ParseCIDR(prefix)
	if err != nil {
		t.Fatal(err)
	}
	if err := ns.Do(func() error { return netlink.RouteAdd(&netlink.Route{Dst: dst, Gw: net.ParseIP(gw)}) }); err != nil {
		t.Fatalf("route %s via %s in %s: %v", prefix, gw, ns.Name(), err)
	}
}

// replaceRoute makes prefix on-link on ns's eth0.
func replaceRoute(t *testing.T, ns *lab.Namespace, prefix string) {
	t.Helper()
	_, dst, err := net.ParseCIDR(prefix)
	if err != nil {
		t.Fatal(err)
	}
	err = ns.Do(func() error {
		link, err := netlink.LinkByName(lab.PlantIface)
		if err != nil {
			return err
		}
		return netlink.RouteReplace(&netlink.Route{Dst: dst, LinkIndex: link.Attrs().Index, Scope: netlink.SCOPE_LINK})
	})
	if err != nil {
		t.Fatalf("on-link route %s in %s: %v", prefix, ns.Name(), err)
	}
}
