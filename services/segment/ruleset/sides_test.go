package ruleset_test

import (
	"errors"
	"io"
	"net"
	"os/exec"
	"syscall"
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

// The reverse: a flow the gate opened toward the OT side belongs to the OT
// side. A host on the uplink must not answer for an asset on it: not with
// a datagram claiming the asset's address (conntrack takes it for the
// flow's reply, and input/established accepted it), nor with an ICMP error
// from its own address quoting the flow (ct state related: a forged "port
// unreachable" that the gate's socket took as the asset's). Here a gate
// process talks UDP to rtu-1, whose zone monitors (would_block lets any
// local process out to it).
func TestUplinkCannotAnswerForTheOTSide(t *testing.T) {
	l := nslab.New(t)
	noRPFilter(t, l)
	if _, err := ruleset.Apply(gateConn(t, l), threeAssets(ruleset.ModeMonitor), time.Now()); err != nil {
		t.Fatal(err)
	}
	udpEcho(t, l.Plant2, nslab.Asset3+":5020")
	gate := dialUDP(t, l.Gate, nslab.GateDownlink2+":0", nslab.Asset3+":5020")
	if _, err := gate.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if got := recv(gate, mustPass); got != "hello" {
		t.Fatalf("control: rtu-1's answer: got %q, want %q", got, "hello")
	}
	gatePort := uint16(gate.LocalAddr().(*net.UDPAddr).Port)

	// An ICMP port unreachable from the client's own address, quoting the
	// gate's datagram to rtu-1.
	sendICMP(t, l.Client, nslab.GateDownlink2, icmpError(3, 3, embeddedUDP(nslab.GateDownlink2, gatePort, nslab.Asset3, 5020)))
	_ = gate.SetReadDeadline(time.Now().Add(mustFail))
	if _, err := gate.Read(make([]byte, 64)); errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("the gate's flow to rtu-1 took a port unreachable from the uplink (%s, in on %s): %v", nslab.Client, nslab.Uplink, err)
	}

	// A datagram from the client claiming rtu-1's address and port.
	addAddr(t, l.Client, nslab.Asset3+"/32", "cl0")
	forger := udpConn(t, l.Client, 0, nslab.Asset3+":5020")
	for i := 0; i < 3; i++ {
		if _, err := forger.WriteToUDP([]byte("forged"), &net.UDPAddr{IP: net.ParseIP(nslab.GateDownlink2), Port: int(gatePort)}); err != nil {
			t.Fatal(err)
		}
	}
	if got := recv(gate, mustFail); got != "" {
		t.Errorf("the gate's flow to rtu-1 took %q from the uplink (source %s, in on %s)", got, nslab.Asset3, nslab.Uplink)
	}
	// Control: rtu-1 itself still answers.
	if _, err := gate.Write([]byte("again")); err != nil {
		t.Fatal(err)
	}
	if got := recv(gate, mustPass); got != "again" {
		t.Errorf("control: rtu-1's answer after the forgeries: got %q, want %q", got, "again")
	}
}

// A host on the uplink cannot inject data into the proxy's connection to
// an asset: a TCP segment claiming plc-1:502 with the sequence numbers the
// device would use next (read here from the device's socket with
// TCP_REPAIR, as an attacker would guess or learn them) arrives on the
// uplink; conntrack finds it in window and input/established accepted it,
// so the proxy read the forger's bytes as the device's. This is the gate
// as shipped with no exception and no monitor zone: forwarding off, so
// reverse-path filtering is not turned on.
func TestUplinkCannotInjectIntoTheProxysFlow(t *testing.T) {
	l := nslab.New(t)
	noRPFilter(t, l)
	// No TCP timestamps, so the forged segment needs none.
	if out, err := l.Gate.Command("sysctl", "-q", "-w", "net.ipv4.tcp_timestamps=0").CombinedOutput(); err != nil {
		t.Fatalf("gate tcp_timestamps: %v\n%s", err, out)
	}
	if _, err := ruleset.Apply(gateConn(t, l), threeAssets(ruleset.ModeEnforce), time.Now()); err != nil {
		t.Fatal(err)
	}
	devices := make(chan net.Conn, 1)
	l.Plant.Serve(t, nslab.Asset1+":502", func(c net.Conn) {
		devices <- c
		_, _ = c.Write([]byte("hello"))
		_, _ = io.Copy(io.Discard, c)
	})
	c, err := l.Gate.Dial(nslab.Asset1+":502", proxy, mustPass)
	if err != nil {
		t.Fatalf("control: proxy to plc-1: %v", err)
	}
	defer c.Close()
	if err := readWithin(c, []byte("hello"), mustPass); err != nil {
		t.Fatalf("control: plc-1's hello: %v", err)
	}
	dev := <-devices
	seq, ack := tcpSeqs(t, dev)

	local := c.LocalAddr().(*net.TCPAddr)
	sendIP(t, l.Client, tcpPacket(nslab.Asset1, 502, local.IP.String(), uint16(local.Port), seq, ack, []byte("forged")))
	if err := readWithin(c, []byte("forged"), mustFail); err == nil {
		t.Errorf("the proxy's connection to plc-1 took data injected from the uplink (source %s:502, in on %s)", nslab.Asset1, nslab.Uplink)
	}
	// Control: the device itself still gets through.
	if _, err := dev.Write([]byte("world")); err != nil {
		t.Fatal(err)
	}
	if err := readWithin(c, []byte("world"), mustPass); err != nil {
		t.Errorf("control: plc-1's data after the forgery: %v", err)
	}
}

// tcpSeqs reads the next sequence number c sends and the next it expects
// (TCP_REPAIR, for a moment: needs CAP_NET_ADMIN).
func tcpSeqs(t *testing.T, c net.Conn) (snd, rcv uint32) {
	t.Helper()
	const tcpRecvQueue, tcpSendQueue = 1, 2
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		f := int(fd)
		get := func(queue int) uint32 {
			if serr == nil {
				serr = unix.SetsockoptInt(f, unix.IPPROTO_TCP, unix.TCP_REPAIR_QUEUE, queue)
			}
			v := 0
			if serr == nil {
				v, serr = unix.GetsockoptInt(f, unix.IPPROTO_TCP, unix.TCP_QUEUE_SEQ)
			}
			return uint32(v)
		}
		if serr = unix.SetsockoptInt(f, unix.IPPROTO_TCP, unix.TCP_REPAIR, 1); serr != nil {
			return
		}
		snd, rcv = get(tcpSendQueue), get(tcpRecvQueue)
		if err := unix.SetsockoptInt(f, unix.IPPROTO_TCP, unix.TCP_REPAIR, -1); err != nil && serr == nil { // off, no window probe
			serr = err
		}
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		t.Fatalf("TCP_REPAIR sequence numbers: %v", err)
	}
	return snd, rcv
}
