package netconf

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
)

// The tests build small labs of named network namespaces (ip netns),
// unique per process and test, deleted when the test ends.

var nsSeq atomic.Int64

// labNS is one private network namespace.
type labNS struct {
	Name   string
	Handle *netlink.Handle
	NS     netns.NsHandle
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("ip (iproute2) not installed")
	}
}

// newLabNS creates a namespace for role, with loopback up.
func newLabNS(t *testing.T, role string) *labNS {
	t.Helper()
	name := fmt.Sprintf("otgnc-%d-%d-%s", os.Getpid(), nsSeq.Add(1), role)
	mustRun(t, "ip", "netns", "add", name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	ns, err := netns.GetFromName(name)
	if err != nil {
		t.Fatalf("open namespace %s: %v", name, err)
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		ns.Close()
		t.Fatalf("netlink in %s: %v", name, err)
	}
	t.Cleanup(func() { h.Close(); ns.Close() })
	mustRun(t, "ip", "-n", name, "link", "set", "lo", "up")
	return &labNS{Name: name, Handle: h, NS: ns}
}

// veth links a in ns1 to b in ns2.
func veth(t *testing.T, ns1 *labNS, a string, ns2 *labNS, b string) {
	t.Helper()
	mustRun(t, "ip", "link", "add", a, "netns", ns1.Name, "type", "veth", "peer", "name", b, "netns", ns2.Name)
}

// run runs a command in ns (nil: here) and returns its output.
func (n *labNS) run(t *testing.T, args ...string) string {
	t.Helper()
	return mustRun(t, append([]string{"ip", "netns", "exec", n.Name}, args...)...)
}

func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitEvent waits for an event of kind (matching ok, if not nil) after
// seq, and returns it.
func waitEvent(t *testing.T, r *Ring, after uint64, kind EventKind, timeout time.Duration, ok func(Event) bool) Event {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		evs, wake := r.Since(after)
		for _, e := range evs {
			if e.Kind == kind && (ok == nil || ok(e)) {
				return e
			}
			after = e.Seq
		}
		select {
		case <-wake:
		case <-deadline.C:
			all, _ := r.Since(0)
			var lines []string
			for _, e := range all {
				lines = append(lines, e.String())
			}
			t.Fatalf("no %s event within %s; events:\n%s", kind, timeout, strings.Join(lines, "\n"))
		}
	}
}
