package ruleset_test

import (
	"encoding/binary"
	"fmt"
	"os/exec"
	"strconv"

	"golang.org/x/sys/unix"
	"strings"
	"testing"
	"time"

	"github.com/otgate/otgate/services/segment/internal/nslab"
	"github.com/otgate/otgate/services/segment/ruleset"
)

// Without the ruleset the lab routes everything; with it, only the proxy's
// sockets reach an asset, and only on its declared ports.
func TestOnlyProxyIdentityReachesAsset(t *testing.T) {
	l := nslab.New(t)
	l.SetForwarding(t, true) // the forward chain, not the sysctl, must stop the routed probes
	listenAll(t, l)
	asset1 := nslab.Asset1 + ":502"

	// Control: the lab works, so every "unreachable" below is the ruleset.
	check(t, []probe{
		{"control: gate as another uid", l.Gate, otherUID, asset1, true},
		{"control: client through the gate", l.Client, root, asset1, true},
		{"control: asset to asset across zones", l.Plant, root, nslab.Asset3 + ":502", true},
	})
	if t.Failed() {
		t.Fatal("lab does not route; cannot test isolation")
	}

	conn := gateConn(t, l)
	if _, err := ruleset.Apply(conn, threeAssets(ruleset.ModeEnforce), time.Now()); err != nil {
		t.Fatal(err)
	}
	check(t, []probe{
		{"proxy to declared asset port", l.Gate, proxy, asset1, true},
		{"proxy to second asset", l.Gate, proxy, nslab.Asset3 + ":502", true},
		{"proxy to undeclared port", l.Gate, proxy, nslab.Asset1 + ":503", false},
		{"proxy uid without the mark", l.Gate, noMark, asset1, false},
		{"another uid with the mark", l.Gate, otherUID, asset1, false},
		{"root", l.Gate, root, asset1, false},
		{"client through the gate (forward)", l.Client, root, asset1, false},
		{"asset to asset across zones (forward)", l.Plant, root, nslab.Asset3 + ":502", false},
		{"asset to asset, other direction", l.Plant2, root, asset1, false},
	})

	objs := nftJSON(t, l)
	if n := nftCount(objs, "table", "inet", "otgate"); n != 1 {
		t.Errorf("nft -j: %d tables inet otgate, want 1", n)
	}
	list := nft(t, l, "list", "set", "inet", "otgate", "asset_ports")
	for _, want := range []string{"10.20.0.10 . 502", "10.20.0.11 . 8080", "10.30.0.10 . 502"} {
		if !strings.Contains(list, want) {
			t.Errorf("nft list set asset_ports lacks %q:\n%s", want, list)
		}
	}
}

// The baseline reaches nothing on the OT side, keeps the gate's own
// listener reachable from the uplink only, and InstallBaseline works on the
// current namespace as init calls it.
func TestBaseline(t *testing.T) {
	l := nslab.New(t)
	l.SetForwarding(t, true) // the forward chain, not the sysctl, must stop the routed probe
	listenAll(t, l)
	l.Gate.Listen(t, "0.0.0.0:8443")
	l.Gate.Listen(t, "0.0.0.0:9000")
	l.Client.Listen(t, nslab.Client+":53")
	// The overlay: endpoint addresses on an interface of the gate (a dummy
	// on the appliance), local, so packets to them leave through lo.
	// (A veth pair with both ends in the gate: the test host may lack the
	// dummy module; only the address being local matters.)
	if out, err := exec.Command("ip", "-n", l.Gate.Name, "link", "add", "ovl0", "type", "veth", "peer", "name", "ovl1").CombinedOutput(); err != nil {
		t.Fatalf("add overlay interface: %v\n%s", err, out)
	}
	for _, args := range [][]string{{"addr", "add", "100.64.0.1/32", "dev", "ovl0"}, {"link", "set", "ovl0", "up"}} {
		if out, err := exec.Command("ip", append([]string{"-n", l.Gate.Name}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v\n%s", args, err, out)
		}
	}
	l.Gate.Listen(t, "100.64.0.1:9001")
	if err := l.Gate.Do(func() error { return ruleset.InstallBaseline(baseSpec()) }); err != nil {
		t.Fatal(err)
	}
	check(t, []probe{
		{"proxy to an asset (none declared)", l.Gate, proxy, nslab.Asset1 + ":502", false},
		{"client to gate listener on uplink", l.Client, root, nslab.GateUplink + ":8443", true},
		{"client to gate, undeclared port", l.Client, root, nslab.GateUplink + ":9000", false},
		{"plant to gate listener (downlink)", l.Plant, root, nslab.GateDownlink + ":8443", false},
		{"client through the gate", l.Client, root, nslab.Asset1 + ":502", false},
		{"loopback on the gate", l.Gate, otherUID, "127.0.0.1:9000", true},
		{"gate to a peer on the uplink (DNS, as another uid)", l.Gate, otherUID, nslab.Client + ":53", true},
		{"gate to its overlay endpoint", l.Gate, otherUID, "100.64.0.1:9001", true},
	})
	objs := nftJSON(t, l)
	if n := nftCount(objs, "rule", "inet", "otgate"); n == 0 {
		t.Error("nft -j: no rules in inet otgate after InstallBaseline")
	}
}

// Apply replaces only its own table: another table survives, unchanged.
func TestApplyLeavesOtherTablesAlone(t *testing.T) {
	l := nslab.New(t)
	nft(t, l, "add", "table", "ip", "someone")
	nft(t, l, "add", "chain", "ip", "someone", "c")
	nft(t, l, "add", "rule", "ip", "someone", "c", "counter")
	before := nft(t, l, "-s", "list", "table", "ip", "someone")
	conn := gateConn(t, l)
	for i := 0; i < 3; i++ {
		if _, err := ruleset.Apply(conn, threeAssets(ruleset.ModeEnforce), time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	if after := nft(t, l, "-s", "list", "table", "ip", "someone"); after != before {
		t.Errorf("table ip someone changed:\n%s\nwant\n%s", after, before)
	}
	if n := nftCount(nftJSON(t, l), "table", "inet", "otgate"); n != 1 {
		t.Errorf("%d tables inet otgate after 3 applies, want 1", n)
	}
}

// A bad spec is refused before anything reaches the kernel.
func TestBadSpecChangesNothing(t *testing.T) {
	l := nslab.New(t)
	conn := gateConn(t, l)
	good := threeAssets(ruleset.ModeEnforce)
	if _, err := ruleset.Apply(conn, good, time.Now()); err != nil {
		t.Fatal(err)
	}
	// -s (stateless): counters tick with any stray packet in the namespace
	// (IPv6 router solicitations, DAD); the rules and sets must not change.
	before := nft(t, l, "-s", "list", "table", "inet", "otgate")
	bad := threeAssets(ruleset.ModeEnforce)
	bad.Assets[1].Address = nslab.Asset1 // duplicate address
	_, err := ruleset.Apply(conn, bad, time.Now())
	if err == nil || !strings.Contains(err.Error(), `already used by asset "plc-1"`) {
		t.Fatalf("Apply(duplicate address) = %v, want an error naming plc-1", err)
	}
	if after := nft(t, l, "-s", "list", "table", "inet", "otgate"); after != before {
		t.Errorf("table changed after a refused spec")
	}
}

// The output chain denies by default: an interface no spec names (here a
// veth standing in for a VLAN sub-interface, eth1.100, that netconf brought
// up before segment heard of it) is the OT side too. Nothing leaves
// through it but the proxy's sockets toward a declared asset port, while
// the gate still reaches the uplink's peers and its own addresses.
func TestOutputDeniesUnnamedInterfaces(t *testing.T) {
	l := nslab.New(t)
	listenAll(t, l)
	const gateIf, gateAddr, otAddr = "dn0.100", "10.40.0.1", "10.40.0.10"
	l.Link(t, gateIf, gateAddr, l.Plant, "pl9", otAddr)
	l.Plant.Listen(t, otAddr+":502")
	l.Client.Listen(t, nslab.Client+":8080")
	l.Gate.Listen(t, gateAddr+":9000")
	check(t, []probe{{"control: gate to the unnamed interface's host", l.Gate, otherUID, otAddr + ":502", true}})
	if t.Failed() {
		t.Fatal("lab broken: cannot test the output guard")
	}
	spec := threeAssets(ruleset.ModeEnforce) // downlinks dn0, dn1: not dn0.100
	if _, err := ruleset.Apply(gateConn(t, l), spec, time.Now()); err != nil {
		t.Fatal(err)
	}
	check(t, []probe{
		{"another uid through the unnamed interface", l.Gate, otherUID, otAddr + ":502", false},
		{"root through the unnamed interface", l.Gate, root, otAddr + ":502", false},
		{"the proxy to an undeclared host through it", l.Gate, proxy, otAddr + ":502", false},
		{"the proxy to a declared asset (control)", l.Gate, proxy, nslab.Asset1 + ":502", true},
		{"another uid to the uplink's peer", l.Gate, otherUID, nslab.Client + ":8080", true},
		{"another uid to the gate's own address on it (via lo)", l.Gate, otherUID, gateAddr + ":9000", true},
	})

	// Declared on that interface, the asset is the proxy's to reach (and
	// only the proxy's), though no spec names the interface.
	spec.Assets = append(spec.Assets, ruleset.Asset{Name: "plc-9", Zone: "cell-9", Mode: ruleset.ModeEnforce, Address: otAddr, TCPPorts: []uint16{502}})
	if _, err := ruleset.Apply(gateConn(t, l), spec, time.Now()); err != nil {
		t.Fatal(err)
	}
	check(t, []probe{
		{"the proxy to the declared asset on the unnamed interface", l.Gate, proxy, otAddr + ":502", true},
		{"another uid to it", l.Gate, otherUID, otAddr + ":502", false},
	})
}

// The same identity check with real processes: socat run by setpriv as a
// given uid, holding CAP_NET_ADMIN only to set SO_MARK on its socket.
func TestProxyIdentityRealProcesses(t *testing.T) {
	for _, b := range []string{"setpriv", "socat"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("%s not installed (Debian packages util-linux, socat)", b)
		}
	}
	l := nslab.New(t)
	listenAll(t, l)
	if _, err := ruleset.Apply(gateConn(t, l), threeAssets(ruleset.ModeEnforce), time.Now()); err != nil {
		t.Fatal(err)
	}
	connect := func(uid, mark int) error {
		args := []string{"--reuid", strconv.Itoa(uid), "--regid", strconv.Itoa(uid), "--clear-groups",
			"--inh-caps", "+net_admin", "--ambient-caps", "+net_admin", "socat", "-u", "OPEN:/dev/null",
			// setsockopt-listen is socat's pre-connect phase (setsockopt-int
			// would mark the socket only after the SYN has left).
			fmt.Sprintf("TCP4:%s:502,connect-timeout=3,setsockopt-listen=%d:%d:x%x", nslab.Asset1, unix.SOL_SOCKET, unix.SO_MARK,
				binary.NativeEndian.AppendUint32(nil, uint32(mark)))}
		out, err := l.Gate.Command("setpriv", args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, strings.TrimSpace(string(out)))
		}
		return nil
	}
	if err := connect(990, 0x5a); err != nil {
		t.Errorf("socat as the proxy (uid 990, mark 0x5a): %v", err)
	}
	// Refused means dropped: the connect times out (any other failure would
	// say nothing about the ruleset).
	if err := connect(1000, 0x5a); err == nil || !strings.Contains(err.Error(), "timed out") {
		t.Errorf("socat as uid 1000 with the proxy's mark: %v, want a connect timeout", err)
	}
	if err := connect(990, 0x1); err == nil || !strings.Contains(err.Error(), "timed out") {
		t.Errorf("socat as uid 990 with another mark: %v, want a connect timeout", err)
	}
}
