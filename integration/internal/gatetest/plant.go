package gatetest

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/otgate/otgate/qemu/lab"
)

// StartDHCPServer runs dnsmasq on the lab's uplink tap, leasing the gate
// lab.GateUplinkIP with 192.0.2.1 as router (extra: more dnsmasq
// arguments, e.g. DHCP options), until the test ends.
func StartDHCPServer(t testing.TB, l *lab.Lab, extra ...string) {
	t.Helper()
	dir := t.TempDir()
	args := append([]string{"--keep-in-foreground", "--conf-file=/dev/null", "--port=0",
		"--interface=" + lab.UplinkTap, "--bind-interfaces", "--user=root", "--group=root",
		"--dhcp-range=" + lab.GateUplinkIP + "," + lab.GateUplinkIP + ",255.255.255.0,1h",
		"--dhcp-option=option:router,192.0.2.1", "--dhcp-authoritative", "--no-ping",
		"--dhcp-leasefile=" + filepath.Join(dir, "leases"), "--pid-file=" + filepath.Join(dir, "pid")}, extra...)
	cmd := l.Uplink.Command("dnsmasq", args...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("dnsmasq: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("dnsmasq output:\n%s", out.String())
		}
	})
}

// Listener is an asset: a TCP listener in a lab namespace that counts the
// connections it accepts.
type Listener struct{ n chan struct{} }

// Listen starts a Listener on addr in ns until the test ends.
func Listen(t testing.TB, ns *lab.Namespace, addr string) *Listener {
	t.Helper()
	ln, err := ns.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	p := &Listener{n: make(chan struct{}, 1000)}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.n <- struct{}{}
			c.Close()
		}
	}()
	return p
}

// Accepted is how many connections the listener has accepted.
func (p *Listener) Accepted() int { return len(p.n) }

// Dial connects to addr from ns within 3 s and closes the connection.
func Dial(ns *lab.Namespace, addr string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	c, err := ns.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	return c.Close()
}
