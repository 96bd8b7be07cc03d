// Package lab builds small network labs for netconf's tests: named
// network namespaces (ip netns), unique per process and deleted when the
// test ends, veth links between them, and real DHCP servers (dnsmasq,
// kea) running inside them.
package lab

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// The tests build small labs of named network namespaces (ip netns),
// unique per process and test, deleted when the test ends.

var nsSeq atomic.Int64

// NS is one private network namespace.
type NS struct {
	Name   string
	Handle *netlink.Handle
	NS     netns.NsHandle
}

func NeedRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("ip (iproute2) not installed")
	}
}

// NewNS creates a namespace for role, with loopback up.
func NewNS(t *testing.T, role string) *NS {
	t.Helper()
	name := fmt.Sprintf("otgnc-%d-%d-%s", os.Getpid(), nsSeq.Add(1), role)
	Run(t, "ip", "netns", "add", name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	ns, err := netns.GetFromName(name)
	if err != nil {
		t.Fatalf("open namespace %s: %v", name, err)
	}
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE) // as the service opens it
	if err != nil {
		ns.Close()
		t.Fatalf("netlink in %s: %v", name, err)
	}
	t.Cleanup(func() { h.Close(); ns.Close() })
	Run(t, "ip", "-n", name, "link", "set", "lo", "up")
	return &NS{Name: name, Handle: h, NS: ns}
}

// veth links a in ns1 to b in ns2.
func Veth(t *testing.T, ns1 *NS, a string, ns2 *NS, b string) {
	t.Helper()
	Run(t, "ip", "link", "add", a, "netns", ns1.Name, "type", "veth", "peer", "name", b, "netns", ns2.Name)
}

// run runs a command in ns (nil: here) and returns its output.
func (n *NS) Run(t *testing.T, args ...string) string {
	t.Helper()
	return Run(t, append([]string{"ip", "netns", "exec", n.Name}, args...)...)
}

func Run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// WaitFor polls cond until it holds or timeout passes.
func WaitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Poke sends one UDP datagram from ns to ip (the kernel resolves ip by
// ARP first); nothing needs to listen.
func Poke(t *testing.T, ns *NS, ip string) {
	t.Helper()
	ns.Run(t, "bash", "-c", "echo poke > /dev/udp/"+ip+"/9")
}
