package ruleset_test

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/otgate/otgate/services/segment/internal/nslab"
	"github.com/otgate/otgate/services/segment/ruleset"
	"golang.org/x/sys/unix"
)

// Behind rtu-1's network (plant2) the lab gets a router: plant2 forwards to
// "far" (10.40.0.2) over a link whose MTU at plant2 is 1280 while every
// host has 1500, the classic path-MTU setup: a full-size segment from
// plc-1 to far makes plant2 answer "fragmentation needed" (mtu 1280).
const (
	farRouter = "10.40.0.1"
	farHost   = "10.40.0.2"
)

func addFar(t *testing.T, l *nslab.Lab) *nslab.NS {
	t.Helper()
	far := l.AddNS(t, "f")
	nslab.Veth(t, l.Plant2, "pl2", farRouter, far, "fa0", farHost)
	l.Plant2.IP(t, "link", "set", "pl2", "mtu", "1280")
	far.IP(t, "route", "add", "default", "via", farRouter)
	l.Gate.IP(t, "route", "add", "10.40.0.0/24", "via", nslab.Asset3)
	if out, err := l.Plant2.Command("sysctl", "-q", "-w", "net.ipv4.ip_forward=1").CombinedOutput(); err != nil {
		t.Fatalf("plant2 ip_forward: %v\n%s", err, out)
	}
	return far
}

func exceptionsSpec(excs ...ruleset.Exception) *ruleset.Spec {
	spec := threeAssets(ruleset.ModeEnforce)
	for i := range excs {
		excs[i].Owner = "ops"
		excs[i].Expires = time.Now().Add(time.Hour)
	}
	spec.Exceptions = excs
	return spec
}

// dialUDP opens a connected UDP socket in ns from laddr (nil: any) to raddr.
func dialUDP(t *testing.T, ns *nslab.NS, laddr, raddr string) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	err := ns.Do(func() error {
		var la *net.UDPAddr
		if laddr != "" {
			la = net.UDPAddrFromAddrPort(netip.MustParseAddrPort(laddr))
		}
		var err error
		c, err = net.DialUDP("udp4", la, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(raddr)))
		return err
	})
	if err != nil {
		t.Fatalf("udp %s -> %s in %s: %v", laddr, raddr, ns.Name, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// sockErr writes "x" on the connected socket c, then reads until d for the
// error an ICMP error turns into (nil when nothing came).
func sockErr(c *net.UDPConn, d time.Duration) error {
	_, _ = c.Write([]byte("x"))
	_ = c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 64)
	for {
		_, err := c.Read(buf)
		if err == nil {
			continue
		}
		if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH) {
			return err
		}
		return nil
	}
}

// The ICMP errors of an exception's flow reach the other end, in both
// directions: destination unreachable (port unreachable from either end,
// fragmentation needed from a router behind the gate: path MTU discovery)
// and time exceeded. Every one here is made by a kernel for a real packet.
// Before, the forward chain passed only the flow's own packets (its key,
// ct direction original or reply) and dropped the errors: a connected UDP
// socket never heard "refused", and TCP through a smaller MTU stalled
// (a path-MTU black hole).
func TestExceptionICMPErrorsPass(t *testing.T) {
	l := nslab.New(t)
	l.SetForwarding(t, true)
	far := addFar(t, l)
	spec := exceptionsSpec(
		ruleset.Exception{ID: "udp-closed", From: nslab.Asset1, To: nslab.Asset3, Protocol: "udp", Port: 5020},
		ruleset.Exception{ID: "udp-back", From: nslab.Asset1, To: nslab.Asset3, Protocol: "udp", Port: 5021},
		ruleset.Exception{ID: "pmtu", From: nslab.Asset1, To: farHost, Protocol: "tcp", Port: 9000},
		ruleset.Exception{ID: "ttl", From: nslab.Asset1, To: farHost, Protocol: "udp", Port: 9001},
	)
	if _, err := ruleset.Apply(gateConn(t, l), spec, time.Now()); err != nil {
		t.Fatal(err)
	}

	t.Run("port unreachable to the source", func(t *testing.T) {
		// Nothing listens on rtu-1 udp 5020: rtu-1 answers port
		// unreachable (ct direction reply).
		c := dialUDP(t, l.Plant, "", nslab.Asset3+":5020")
		if err := sockErr(c, mustPass); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("plc-1 -> rtu-1 udp 5020 (exception udp-closed, nothing listening): got %v, want connection refused (rtu-1's port unreachable dropped at the gate)", err)
		}
	})

	t.Run("port unreachable to the destination", func(t *testing.T) {
		// rtu-1 answers on the exception's flow after plc-1 closed its
		// socket: plc-1 answers port unreachable (ct direction original).
		ln := udpConn(t, l.Plant2, 0, nslab.Asset3+":5021")
		plc := dialUDP(t, l.Plant, "", nslab.Asset3+":5021")
		if _, err := plc.Write([]byte("hi")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 16)
		_ = ln.SetReadDeadline(time.Now().Add(mustPass))
		_, from, err := ln.ReadFromUDP(buf)
		if err != nil {
			t.Fatalf("control: rtu-1 did not get plc-1's datagram: %v", err)
		}
		ln.Close()
		plc.Close()
		rtu := dialUDP(t, l.Plant2, nslab.Asset3+":5021", from.String())
		if err := sockErr(rtu, mustPass); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("rtu-1:5021 -> plc-1 (reply of exception udp-back, plc-1's socket closed): got %v, want connection refused (plc-1's port unreachable dropped at the gate)", err)
		}
	})

	t.Run("fragmentation needed", func(t *testing.T) {
		const size = 256 << 10
		far.Serve(t, farHost+":9000", func(c net.Conn) {
			if _, err := io.CopyN(io.Discard, c, size); err == nil {
				_, _ = c.Write([]byte("ok"))
			}
		})
		c, err := l.Plant.Dial(farHost+":9000", root, mustPass)
		if err != nil {
			t.Fatalf("control: plc-1 -> far tcp 9000 (exception pmtu): %v", err)
		}
		defer c.Close()
		go func() { _, _ = c.Write(make([]byte, size)) }()
		if err := readWithin(c, []byte("ok"), mustPass); err != nil {
			t.Errorf("plc-1 -> far tcp 9000 through an MTU of 1280: %d bytes not through: %v (plant2's fragmentation needed dropped at the gate: a path-MTU black hole)", size, err)
		}
	})

	t.Run("time exceeded", func(t *testing.T) {
		// TTL 2: the gate forwards it with TTL 1, plant2 answers time
		// exceeded.
		c := dialUDP(t, l.Plant, "", farHost+":9001")
		setIPOpt(t, c, unix.IP_TTL, 2)
		setIPOpt(t, c, unix.IP_RECVERR, 1)
		if err := sockErr(c, mustPass); !errors.Is(err, syscall.EHOSTUNREACH) {
			t.Errorf("plc-1 -> far udp 9001 with TTL 2 (exception ttl): got %v, want host unreachable (plant2's time exceeded dropped at the gate)", err)
		}
	})
}

// Only the errors of an exception's flow pass, and only error types:
// destination unreachable, time exceeded, parameter problem. A redirect or
// a source quench quoting the flow (conntrack relates those too), an echo
// request, and an error of the flow once the exception has ended are
// dropped. The messages are forged by rtu-1 (a raw socket) and plc-1
// watches what arrives.
func TestExceptionICMPOnlyErrorsOfItsFlow(t *testing.T) {
	l := nslab.New(t)
	l.SetForwarding(t, true)
	exc := ruleset.Exception{ID: "udp-flow", From: nslab.Asset1, To: nslab.Asset3, Protocol: "udp", Port: 5020}
	conn := gateConn(t, l)
	if _, err := ruleset.Apply(conn, exceptionsSpec(exc), time.Now()); err != nil {
		t.Fatal(err)
	}
	// The flow plc-1:40020 -> rtu-1:5020, answered.
	udpEcho(t, l.Plant2, nslab.Asset3+":5020")
	plc := dialUDP(t, l.Plant, nslab.Asset1+":40020", nslab.Asset3+":5020")
	if _, err := plc.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if got := recv(plc, mustPass); got != "hello" {
		t.Fatalf("control: exception flow: got %q", got)
	}
	sniff := sniffICMP(t, l.Plant)
	quoted := embeddedUDP(nslab.Asset1, 40020, nslab.Asset3, 5020)

	for _, m := range []struct {
		what       string
		typ, code  byte
		body       []byte
		want       bool
		quotedPort uint16
	}{
		{"destination unreachable (port)", 3, 3, quoted, true, 5020},
		{"fragmentation needed", 3, 4, quoted, true, 5020},
		{"time exceeded", 11, 0, quoted, true, 5020},
		{"parameter problem", 12, 0, quoted, true, 5020},
		{"redirect", 5, 1, quoted, false, 5020},
		{"source quench", 4, 0, quoted, false, 5020},
	} {
		sendICMP(t, l.Plant2, nslab.Asset1, icmpError(m.typ, m.code, m.body))
		timeout := mustFail
		if m.want {
			timeout = mustPass
		}
		if got := sniff.wait(m.typ, m.quotedPort, timeout); got != m.want {
			t.Errorf("%s (type %d) quoting the exception's flow, rtu-1 -> plc-1: arrived=%v, want %v", m.what, m.typ, got, m.want)
		}
	}
	// (A body of zeros: wait reads its "quoted port" as 0.)
	sendICMP(t, l.Plant2, nslab.Asset1, icmpMessage(8, 0, make([]byte, 64)))
	if sniff.wait(8, 0, mustFail) {
		t.Error("echo request rtu-1 -> plc-1 arrived")
	}

	// The exception ends (applied without it); the flow's conntrack entry
	// stays, its errors no longer pass.
	if _, err := ruleset.Apply(conn, exceptionsSpec(), time.Now()); err != nil {
		t.Fatal(err)
	}
	sendICMP(t, l.Plant2, nslab.Asset1, icmpError(3, 3, quoted))
	if sniff.wait(3, 5020, mustFail) {
		t.Error("destination unreachable of the flow arrived after its exception ended")
	}
}
