package proxy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/vishvananda/netns"
)

// lab is two private network namespaces joined by a veth pair: "gate"
// (the proxy's OT side, where it dials from) and "plant" (the assets).
// Nothing is created in the root namespace that outlives the test: the
// namespaces belong to holder processes killed in Cleanup, and the veth
// dies with them.
type lab struct {
	gatePID, plantPID int
	gateNS, plantNS   netns.NsHandle
	gateAddr          netip.Addr
	plantAddr         netip.Addr
	mark              int
}

func run(t testing.TB, name string, args ...string) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

func holder(t testing.TB) int {
	t.Helper()
	cmd := exec.Command("unshare", "--net", "sleep", "3600")
	if err := cmd.Start(); err != nil {
		t.Fatalf("start namespace holder: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	// Wait until the holder is in its own namespace.
	self, _ := os.Readlink("/proc/self/ns/net")
	for i := 0; ; i++ {
		ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", cmd.Process.Pid))
		if err == nil && ns != self && ns != "" {
			// unshare execs sleep after unsharing
			if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", cmd.Process.Pid)); strings.TrimSpace(string(comm)) == "sleep" {
				return cmd.Process.Pid
			}
		}
		if i > 3000 {
			t.Fatal("namespace holder did not start within 30s")
		}
		sleepMs(10)
	}
}

// newLab builds the two namespaces. The gate namespace drops every packet
// to the plant that does not carry mark (nftables, like the segment
// service's rule that only the proxy's sockets reach assets).
func newLab(t testing.TB) *lab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces)")
	}
	for _, b := range []string{"unshare", "ip", "nsenter", "nft"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("%s not installed", b)
		}
	}
	l := &lab{gateAddr: netip.MustParseAddr("10.99.0.1"), plantAddr: netip.MustParseAddr("10.99.0.2"), mark: 0x6f74}
	l.gatePID, l.plantPID = holder(t), holder(t)
	var rb [3]byte
	rand.Read(rb[:])
	a, b := "otg"+hex.EncodeToString(rb[:]), "otp"+hex.EncodeToString(rb[:])
	run(t, "ip", "link", "add", a, "type", "veth", "peer", "name", b)
	t.Cleanup(func() { exec.Command("ip", "link", "del", a).Run() })
	run(t, "ip", "link", "set", a, "netns", strconv.Itoa(l.gatePID))
	run(t, "ip", "link", "set", b, "netns", strconv.Itoa(l.plantPID))
	for _, x := range []struct {
		pid  int
		dev  string
		addr netip.Addr
	}{{l.gatePID, a, l.gateAddr}, {l.plantPID, b, l.plantAddr}} {
		p := strconv.Itoa(x.pid)
		run(t, "nsenter", "-t", p, "-n", "ip", "link", "set", "lo", "up")
		run(t, "nsenter", "-t", p, "-n", "ip", "addr", "add", x.addr.String()+"/24", "dev", x.dev)
		run(t, "nsenter", "-t", p, "-n", "ip", "link", "set", x.dev, "up")
	}
	for _, extra := range []string{"10.99.0.3", "10.99.0.4", "10.99.0.5"} {
		run(t, "nsenter", "-t", strconv.Itoa(l.plantPID), "-n", "ip", "addr", "add", extra+"/24", "dev", b)
	}
	rules := fmt.Sprintf(`table inet otgate_test {
	chain out {
		type filter hook output priority 0; policy accept;
		ip daddr 10.99.0.0/24 meta mark != %d counter drop
	}
}
`, l.mark)
	cmd := exec.Command("nsenter", "-t", strconv.Itoa(l.gatePID), "-n", "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft in the gate namespace: %v\n%s", err, out)
	}
	var err error
	if l.gateNS, err = netns.GetFromPid(l.gatePID); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.gateNS.Close() })
	if l.plantNS, err = netns.GetFromPid(l.plantPID); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.plantNS.Close() })
	return l
}

// inNS runs f on a thread switched into ns; the thread is discarded after
// (the goroutine exits locked), so no other goroutine ever runs in ns.
func inNS(ns netns.NsHandle, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := netns.Set(ns); err != nil {
			errc <- fmt.Errorf("setns: %w", err)
			return
		}
		errc <- f()
	}()
	return <-errc
}

// listenPlant listens on every plant address (10.99.0.2-5) inside the
// plant namespace.
func (l *lab) listenPlant(t testing.TB, port int) net.Listener {
	t.Helper()
	var ln net.Listener
	err := inNS(l.plantNS, func() (err error) {
		ln, err = net.Listen("tcp", ":"+strconv.Itoa(port))
		return err
	})
	if err != nil {
		t.Fatalf("listen in the plant namespace: %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// dialer dials from the gate namespace with the proxy's own dialer (which
// sets SO_MARK); mark 0 shows the nftables rule is real.
func (l *lab) dialer(mark int) func(context.Context, netip.AddrPort) (io.ReadWriteCloser, error) {
	d := tcpDialer(mark, 5e9)
	return func(ctx context.Context, ap netip.AddrPort) (c io.ReadWriteCloser, err error) {
		err = inNS(l.gateNS, func() error {
			c, err = d(ctx, ap)
			return err
		})
		return c, err
	}
}

// serveEcho echoes every connection.
func serveEcho(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			io.Copy(c, c)
			c.Close()
		}()
	}
}

func netipAddrPort(a netip.Addr, port uint16) netip.AddrPort { return netip.AddrPortFrom(a, port) }
