package ruleset_test

import (
	"net"
	"os/exec"
	"testing"
	"time"

	"github.com/otgate/otgate/services/segment/internal/nslab"
	"github.com/otgate/otgate/services/segment/ruleset"
	"golang.org/x/sys/unix"
)

// The conntrack entries of the gate's uplink flows (its DHCP, DNS and NTP
// exchanges, the clients of its listeners) belong to the uplink: the
// established/related accepts must not take a packet of such a flow
// arriving from the OT side or leaving toward it. Without that, with
// reverse-path filtering off (the kernel's default, and the gate's while it
// routes nothing: the service turns strict filtering on only with
// forwarding), an OT device that claims an uplink peer's address answers
// for it (a forged DNS or NTP reply), and a local process that is not the
// proxy sends to an asset on a flow it first opened through the uplink.

// noRPFilter turns reverse-path filtering off in the gate, as on a gate
// whose forwarding is off.
func noRPFilter(t *testing.T, l *nslab.Lab) {
	t.Helper()
	for _, k := range []string{"all", "default", nslab.Uplink, nslab.Downlink, nslab.Downlink2} {
		if out, err := l.Gate.Command("sysctl", "-q", "-w", "net.ipv4.conf."+k+".rp_filter=0").CombinedOutput(); err != nil {
			t.Fatalf("gate rp_filter: %v\n%s", err, out)
		}
	}
}

func addAddr(t *testing.T, ns *nslab.NS, addr, dev string) {
	t.Helper()
	if out, err := exec.Command("ip", "-n", ns.Name, "addr", "add", addr, "dev", dev).CombinedOutput(); err != nil {
		t.Fatalf("ip -n %s addr add %s dev %s: %v\n%s", ns.Name, addr, dev, err, out)
	}
}

// udpConn opens a UDP socket in ns as uid (0: root) bound to addr.
func udpConn(t *testing.T, ns *nslab.NS, uid int, addr string) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	err := ns.Do(func() error {
		if uid != 0 {
			unix.Setfsuid(uid)
		}
		a, err := net.ResolveUDPAddr("udp4", addr)
		if err != nil {
			return err
		}
		c, err = net.ListenUDP("udp4", a)
		return err
	})
	if err != nil {
		t.Fatalf("udp socket %s in %s: %v", addr, ns.Name, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// udpEcho answers every datagram to addr in ns with the same payload.
func udpEcho(t *testing.T, ns *nslab.NS, addr string) {
	t.Helper()
	c := udpConn(t, ns, 0, addr)
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := c.ReadFromUDP(buf)
			if err != nil {
				return
			}
			_, _ = c.WriteToUDP(buf[:n], from)
		}
	}()
}

// recv waits up to d for a datagram on c and returns its payload ("" if none).
func recv(c *net.UDPConn, d time.Duration) string {
	buf := make([]byte, 1500)
	_ = c.SetReadDeadline(time.Now().Add(d))
	n, _, err := c.ReadFromUDP(buf)
	if err != nil {
		return ""
	}
	return string(buf[:n])
}

func bindToDevice(t *testing.T, c *net.UDPConn, dev string) {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.BindToDevice(int(fd), dev) }); err != nil {
		t.Fatal(err)
	}
	if serr != nil {
		t.Fatalf("SO_BINDTODEVICE %q: %v", dev, serr)
	}
}

// An OT device cannot answer for a peer of the gate's uplink: the gate
// asks the client (a DNS-like exchange, any uid), the real answer arrives;
// a forged answer from the plant, with the client's address as source and
// the gate's port as destination, matches the flow's conntrack entry but
// arrives on the OT side, and must not reach the gate's socket.
func TestOTCannotAnswerForTheUplink(t *testing.T) {
	l := nslab.New(t)
	noRPFilter(t, l)
	if _, err := ruleset.Apply(gateConn(t, l), threeAssets(ruleset.ModeEnforce), time.Now()); err != nil {
		t.Fatal(err)
	}
	udpEcho(t, l.Client, nslab.Client+":5353")
	// The plant claims the client's address (a /32: its route to the gate
	// stays its default route, through dn0).
	addAddr(t, l.Plant, nslab.Client+"/32", "pl0")
	forger := udpConn(t, l.Plant, 0, nslab.Client+":5353")

	gate := udpConn(t, l.Gate, 1000, nslab.GateUplink+":0")
	client := &net.UDPAddr{IP: net.ParseIP(nslab.Client), Port: 5353}
	if _, err := gate.WriteToUDP([]byte("query"), client); err != nil {
		t.Fatal(err)
	}
	if got := recv(gate, mustPass); got != "query" {
		t.Fatalf("control: the client's answer: got %q, want %q", got, "query")
	}
	gatePort := gate.LocalAddr().(*net.UDPAddr).Port
	for i := 0; i < 3; i++ {
		if _, err := forger.WriteToUDP([]byte("forged"), &net.UDPAddr{IP: net.ParseIP(nslab.GateUplink), Port: gatePort}); err != nil {
			t.Fatal(err)
		}
	}
	if got := recv(gate, mustFail); got != "" {
		t.Errorf("the gate's uplink flow took %q from the OT side (a forged answer, source %s, in on %s)", got, nslab.Client, nslab.Downlink)
	}
}

// A process that is not the proxy cannot reach an asset on a flow it opened
// through the uplink: as uid 1000 it sends to the asset's address bound to
// the uplink (output lets anything out there), a host on the uplink that
// claims the asset's address answers (the flow is established), then it
// sends to the same address and port unbound, through dn0.
func TestUplinkFlowDoesNotReachOT(t *testing.T) {
	l := nslab.New(t)
	noRPFilter(t, l)
	if _, err := ruleset.Apply(gateConn(t, l), threeAssets(ruleset.ModeEnforce), time.Now()); err != nil {
		t.Fatal(err)
	}
	asset := udpConn(t, l.Plant, 0, nslab.Asset1+":5020")
	addAddr(t, l.Client, nslab.Asset1+"/32", "cl0")
	udpEcho(t, l.Client, nslab.Asset1+":5020")

	// Bound to an address, so both sends are one flow (one 4-tuple).
	gate := udpConn(t, l.Gate, 1000, nslab.GateUplink+":0")
	dst := &net.UDPAddr{IP: net.ParseIP(nslab.Asset1), Port: 5020}
	bindToDevice(t, gate, nslab.Uplink)
	if _, err := gate.WriteToUDP([]byte("hello"), dst); err != nil {
		t.Fatal(err)
	}
	if got := recv(gate, mustPass); got != "hello" {
		t.Fatalf("control: the uplink host's answer: got %q, want %q", got, "hello")
	}
	bindToDevice(t, gate, "")
	for i := 0; i < 3; i++ {
		_, _ = gate.WriteToUDP([]byte("to the asset"), dst) // EPERM when dropped
	}
	if got := recv(asset, mustFail); got != "" {
		t.Errorf("uid 1000 reached the asset %s through %s with %q: an uplink flow's conntrack entry let it out on the OT side", nslab.Asset1, nslab.Downlink, got)
	}
	// Control: the proxy still reaches the asset.
	l.Plant.Listen(t, nslab.Asset1+":502")
	check(t, []probe{{"proxy to plc-1", l.Gate, proxy, nslab.Asset1 + ":502", true}})
}
