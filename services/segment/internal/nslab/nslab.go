// Package nslab builds the segment tests' network: private network
// namespaces joined by veth pairs, with a "gate" namespace in the middle.
//
//	client (10.10.0.2) --cl0/up0-- gate --dn0/pl0-- plant  (10.20.0.10, 10.20.0.11)
//	                                    --dn1/pl1-- plant2 (10.30.0.10)
//
// The gate's IPv4 forwarding is off, as in a fresh namespace and on a
// booted gate: the segment service turns it on when its ruleset needs it
// (an exception, a monitor zone). A test that applies a ruleset without the
// service, and must see the forward chain itself decide, turns it on with
// SetForwarding. Namespaces are named
// otg<random><role> under /run/netns and deleted in t.Cleanup, even when the
// test fails. Nothing touches the root namespace's interfaces.
package nslab

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Addresses of the topology.
const (
	GateUplink    = "10.10.0.1"
	Client        = "10.10.0.2"
	GateDownlink  = "10.20.0.1"
	Asset1        = "10.20.0.10"
	Asset2        = "10.20.0.11"
	GateDownlink2 = "10.30.0.1"
	Asset3        = "10.30.0.10"

	Uplink    = "up0"
	Downlink  = "dn0"
	Downlink2 = "dn1"
)

// NS is one network namespace.
type NS struct {
	Name string
}

// Lab is the whole topology.
type Lab struct {
	Gate, Client, Plant, Plant2 *NS
	id                          string
}

// Require skips the test unless it runs as root with the ip and nft tools.
func Require(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("nslab: needs root (network namespaces, nftables)")
	}
	for _, b := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("nslab: %s not installed (Debian packages iproute2, nftables)", b)
		}
	}
}

// New builds the topology and registers its removal.
func New(t testing.TB) *Lab {
	t.Helper()
	Require(t)
	var r [3]byte
	if _, err := rand.Read(r[:]); err != nil {
		t.Fatal(err)
	}
	id := "otg" + hex.EncodeToString(r[:])
	l := &Lab{Gate: &NS{id + "g"}, Client: &NS{id + "c"}, Plant: &NS{id + "p"}, Plant2: &NS{id + "q"}, id: id}
	for _, n := range []*NS{l.Gate, l.Client, l.Plant, l.Plant2} {
		run(t, "ip", "netns", "add", n.Name)
		name := n.Name
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
		run(t, "ip", "-n", n.Name, "link", "set", "lo", "up")
	}
	pair := func(a *NS, aif, aaddr string, b *NS, bif, baddr string, extra ...string) {
		run(t, "ip", "-n", a.Name, "link", "add", aif, "type", "veth", "peer", "name", bif, "netns", b.Name)
		run(t, "ip", "-n", a.Name, "addr", "add", aaddr+"/24", "dev", aif)
		run(t, "ip", "-n", b.Name, "addr", "add", baddr+"/24", "dev", bif)
		for _, e := range extra {
			run(t, "ip", "-n", b.Name, "addr", "add", e+"/24", "dev", bif)
		}
		run(t, "ip", "-n", a.Name, "link", "set", aif, "up")
		run(t, "ip", "-n", b.Name, "link", "set", bif, "up")
		run(t, "ip", "-n", b.Name, "route", "add", "default", "via", aaddr)
	}
	pair(l.Gate, Uplink, GateUplink, l.Client, "cl0", Client)
	pair(l.Gate, Downlink, GateDownlink, l.Plant, "pl0", Asset1, Asset2)
	pair(l.Gate, Downlink2, GateDownlink2, l.Plant2, "pl1", Asset3)
	return l
}

// ForwardingSysctl is the IPv4 forwarding switch (per network namespace).
const ForwardingSysctl = "/proc/sys/net/ipv4/ip_forward"

// SetForwarding turns the gate's IPv4 forwarding on or off.
func (l *Lab) SetForwarding(t testing.TB, on bool) {
	t.Helper()
	v := "0"
	if on {
		v = "1"
	}
	if err := l.Gate.Do(func() error { return os.WriteFile(ForwardingSysctl, []byte(v), 0o644) }); err != nil {
		t.Fatalf("nslab: gate ip_forward=%s: %v", v, err)
	}
}

// Forwarding reads the gate's IPv4 forwarding switch.
func (l *Lab) Forwarding(t testing.TB) bool {
	t.Helper()
	var b []byte
	if err := l.Gate.Do(func() (err error) { b, err = os.ReadFile(ForwardingSysctl); return err }); err != nil {
		t.Fatalf("nslab: read gate ip_forward: %v", err)
	}
	return strings.TrimSpace(string(b)) == "1"
}

// Link adds a veth pair between the gate (gateIf, gateAddr/24) and peer
// (peerIf, peerAddr/24; the subnet is on-link on both sides): another OT-side
// interface, e.g. one no spec names.
func (l *Lab) Link(t testing.TB, gateIf, gateAddr string, peer *NS, peerIf, peerAddr string) {
	t.Helper()
	run(t, "ip", "-n", l.Gate.Name, "link", "add", gateIf, "type", "veth", "peer", "name", peerIf, "netns", peer.Name)
	run(t, "ip", "-n", l.Gate.Name, "addr", "add", gateAddr+"/24", "dev", gateIf)
	run(t, "ip", "-n", peer.Name, "addr", "add", peerAddr+"/24", "dev", peerIf)
	run(t, "ip", "-n", l.Gate.Name, "link", "set", gateIf, "up")
	run(t, "ip", "-n", peer.Name, "link", "set", peerIf, "up")
}

// AddNS adds another namespace to the lab (named like the others, with
// role as its last letters; loopback up), removed when the test ends. It
// has no interface: join it with Veth.
func (l *Lab) AddNS(t testing.TB, role string) *NS {
	t.Helper()
	n := &NS{l.id + role}
	run(t, "ip", "netns", "add", n.Name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", n.Name).Run() })
	run(t, "ip", "-n", n.Name, "link", "set", "lo", "up")
	return n
}

// Veth joins a (aif, aaddr/24) and b (bif, baddr/24) by a veth pair and
// brings both ends up; no route is added.
func Veth(t testing.TB, a *NS, aif, aaddr string, b *NS, bif, baddr string) {
	t.Helper()
	run(t, "ip", "-n", a.Name, "link", "add", aif, "type", "veth", "peer", "name", bif, "netns", b.Name)
	run(t, "ip", "-n", a.Name, "addr", "add", aaddr+"/24", "dev", aif)
	run(t, "ip", "-n", b.Name, "addr", "add", baddr+"/24", "dev", bif)
	run(t, "ip", "-n", a.Name, "link", "set", aif, "up")
	run(t, "ip", "-n", b.Name, "link", "set", bif, "up")
}

// IP runs "ip -n <ns> args..." and fails the test if it fails.
func (n *NS) IP(t testing.TB, args ...string) {
	t.Helper()
	run(t, "ip", append([]string{"-n", n.Name}, args...)...)
}

func run(t testing.TB, name string, args ...string) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("nslab: %s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// Path is the namespace's file under /run/netns.
func (n *NS) Path() string { return "/run/netns/" + n.Name }

// Open returns a file referring to the namespace (for nftables.WithNetNSFd).
func (n *NS) Open(t testing.TB) *os.File {
	t.Helper()
	f, err := os.Open(n.Path())
	if err != nil {
		t.Fatalf("nslab: open %s: %v", n.Path(), err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// Do runs fn on an OS thread that has entered the namespace. The thread is
// never handed back to the Go scheduler (it exits with the goroutine), so
// namespace and credential changes cannot leak into other goroutines.
func (n *NS) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with us
		f, err := os.Open(n.Path())
		if err != nil {
			errc <- err
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", n.Name, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// Command runs a program inside the namespace.
func (n *NS) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// Listen opens a TCP listener in the namespace that accepts connections
// and discards what they send, until the test ends.
func (n *NS) Listen(t testing.TB, addr string) net.Listener {
	t.Helper()
	return n.Serve(t, addr, func(c net.Conn) {
		buf := make([]byte, 64<<10)
		for {
			if _, err := c.Read(buf); err != nil {
				return
			}
		}
	})
}

// Serve opens a TCP listener in the namespace and runs handle on each
// accepted connection (in its own goroutine; the connection is closed when
// handle returns), until the test ends.
func (n *NS) Serve(t testing.TB, addr string, handle func(net.Conn)) net.Listener {
	t.Helper()
	var ln net.Listener
	err := n.Do(func() (err error) {
		ln, err = net.Listen(tcpNetwork(addr), addr)
		return err
	})
	if err != nil {
		t.Fatalf("nslab: listen %s in %s: %v", addr, n.Name, err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c)
			}()
		}
	}()
	return ln
}

// Identity is who opens a probe socket: its fsuid (0 = root) and SO_MARK.
type Identity struct {
	UID  uint32
	Mark uint32
}

// Dial opens a TCP connection from the namespace as id. The socket gets the
// uid through the thread's fsuid (the kernel stamps a socket with the fsuid
// of its creator), exactly as if a process of that uid had opened it.
func (n *NS) Dial(addr string, id Identity, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := n.Do(func() error {
		if id.UID != 0 {
			unix.Setfsuid(int(id.UID))
		}
		d := net.Dialer{Timeout: timeout}
		if id.Mark != 0 {
			d.Control = func(_, _ string, rc syscall.RawConn) error {
				var serr error
				if err := rc.Control(func(fd uintptr) {
					serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(id.Mark))
				}); err != nil {
					return err
				}
				return serr
			}
		}
		var err error
		c, err = d.Dial(tcpNetwork(addr), addr)
		return err
	})
	return c, err
}

// tcpNetwork is "tcp6" for an address with an IPv6 literal ("[fd00::1]:502",
// "[fe80::1%dn0]:502"), else "tcp4".
func tcpNetwork(addr string) string {
	if strings.HasPrefix(addr, "[") {
		return "tcp6"
	}
	return "tcp4"
}

// Reach reports whether a TCP connection from the namespace as id to addr
// completes within timeout. A refused or timed-out connection is false;
// any other error (a broken lab) is returned.
func (n *NS) Reach(addr string, id Identity, timeout time.Duration) (bool, error) {
	c, err := n.Dial(addr, id, timeout)
	if err == nil {
		c.Close()
		return true, nil
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH) {
		return false, nil
	}
	return false, err
}
