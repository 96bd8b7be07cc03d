package lab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("lab needs root (network namespaces, taps)")
	}
	for _, bin := range []string{"nsenter", "ip"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("lab needs %s on PATH: %v", bin, err)
		}
	}
}

// hostLinks lists the interfaces of the host's network namespace.
func hostLinks(t *testing.T) map[string]bool {
	t.Helper()
	out, err := exec.Command("ip", "-o", "link", "show").CombinedOutput()
	if err != nil {
		t.Fatalf("ip link: %v\n%s", err, out)
	}
	names := map[string]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 1 {
			names[strings.TrimSuffix(strings.SplitN(f[1], "@", 2)[0], ":")] = true
		}
	}
	return names
}

// requireNoLabLinksOnHost fails if any of the lab's interfaces shows up in
// the host namespace (other programs may add their own meanwhile).
func requireNoLabLinksOnHost(t *testing.T, when string) {
	t.Helper()
	links := hostLinks(t)
	for _, n := range []string{UplinkTap, DownlinkTap, Bridge, PlantVethLab} {
		if links[n] {
			t.Errorf("%s: lab interface %s is in the host namespace", when, n)
		}
	}
}

// nsAlive reports whether anything still refers to the network namespace
// with the given inode: a thread, an open descriptor, or a bind mount
// (what `ip netns add` puts in /run/netns).
func nsAlive(inode uint64) bool {
	want := fmt.Sprintf("net:[%d]", inode)
	for _, pattern := range []string{"/proc/[0-9]*/task/*/ns/net", "/proc/[0-9]*/fd/*"} {
		paths, _ := filepath.Glob(pattern)
		for _, p := range paths {
			if link, err := os.Readlink(p); err == nil && link == want {
				return true
			}
		}
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	return strings.Contains(string(mi), want)
}

func nsMounted(inode uint64) bool {
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	return strings.Contains(string(mi), fmt.Sprintf("net:[%d]", inode))
}

func TestLabTopologyAndCleanup(t *testing.T) {
	requireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l, err := New(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	inodes := []uint64{l.Uplink.Inode(), l.Plant.Inode()}
	for _, ino := range inodes {
		if !nsAlive(ino) {
			t.Fatalf("namespace net:[%d] not visible while the lab is open: the leak check below would prove nothing", ino)
		}
	}

	requireNoLabLinksOnHost(t, "lab up")
	for _, ino := range inodes {
		if nsMounted(ino) {
			t.Errorf("namespace net:[%d] is bind-mounted (named in /run/netns?)", ino)
		}
	}
	out, err := l.Uplink.Command("ip", "-o", "addr", "show").CombinedOutput()
	if err != nil {
		t.Fatalf("ip addr in lab: %v\n%s", err, out)
	}
	for _, want := range []string{UplinkTap + " ", "inet " + UplinkHostCIDR} {
		if !strings.Contains(string(out), want) {
			t.Errorf("lab namespace lacks %q:\n%s", want, out)
		}
	}
	out, err = l.Uplink.Command("ip", "-o", "link", "show", "master", Bridge).CombinedOutput()
	if err != nil {
		t.Fatalf("ip link master %s: %v\n%s", Bridge, err, out)
	}
	for _, port := range []string{DownlinkTap, PlantVethLab} {
		if !strings.Contains(string(out), port) {
			t.Errorf("bridge %s lacks port %s:\n%s", Bridge, port, out)
		}
	}
	out, err = l.Plant.Command("ip", "-o", "addr", "show", PlantIface).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "inet "+PlantCIDR) {
		t.Errorf("plant %s lacks %s: %v\n%s", PlantIface, PlantCIDR, err, out)
	}

	// A process left running in the plant must not keep it alive.
	sleeper := l.Plant.Command("sleep", "600")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	waitDone := make(chan error, 1)
	go func() { waitDone <- sleeper.Wait() }()

	if err := l.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	select {
	case <-waitDone:
	case <-time.After(30 * time.Second):
		t.Fatal("process in the plant namespace survived Close")
	}
	for _, ino := range inodes {
		if nsAlive(ino) {
			t.Errorf("namespace net:[%d] still referenced after Close", ino)
		}
	}
	requireNoLabLinksOnHost(t, "after Close")
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestLabNamespacesAreIsolated(t *testing.T) {
	requireRoot(t)
	l, err := New(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	ln, err := l.Plant.Listen("tcp", PlantIP().String()+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// From the lab namespace the plant is only reachable through the gate,
	// which is not running: the connect must fail, not "succeed".
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if c, err := l.Uplink.DialContext(ctx, "tcp", ln.Addr().String()); err == nil {
		c.Close()
		t.Fatalf("lab namespace reached plant %s without a gate", ln.Addr())
	}
	// Inside the plant itself it works.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	c, err := l.Plant.DialContext(ctx2, "tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("dial inside plant: %v", err)
	}
	c.Close()
}
