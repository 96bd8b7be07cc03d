package qemu

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/otgate/otgate/qemu/lab"
)

// TestLabNetwork boots the gate's NICs into the lab: the guest puts its
// uplink (eth0) on 192.0.2.10/24 and its OT downlink (eth1) on 10.77.0.1/24
// and listens on both; the plant namespace and the lab namespace each
// connect to it, and the guest connects to a listener in the plant.
func TestLabNetwork(t *testing.T) {
	for _, name := range []string{"qemu-x86_64", "qemu-aarch64"} {
		t.Run(name, func(t *testing.T) {
			b := mustBoard(t, name)
			requireQEMU(t, b, "nsenter", "ip")
			img := testImage(t, b)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			l, err := lab.New(ctx)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = l.Close() })

			plc, err := l.Plant.Listen("tcp", lab.PlantIP().String()+":9000")
			if err != nil {
				t.Fatal(err)
			}
			defer plc.Close()
			fromGuest := make(chan string, 1)
			go func() {
				c, err := plc.Accept()
				if err != nil {
					fromGuest <- "accept: " + err.Error()
					return
				}
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(30 * time.Second))
				line, _ := bufio.NewReader(c).ReadString('\n')
				fromGuest <- strings.TrimSpace(line) + " from " + c.RemoteAddr().String()
			}()

			vm := StartT(t, b, "", img, WithLab(l), WithCmdline(
				fmt.Sprintf("testinit.addr=eth0=%s/24,eth1=%s/24", lab.GateUplinkIP, lab.GateDownlinkIP),
				"testinit.listen=7777", "testinit.dial="+plc.Addr().String(), "testinit.then=wait"))
			if _, err := vm.WaitFor(ctx, "testinit: listening 7777"); err != nil {
				t.Fatal(err)
			}

			// The guest's eth1 frames reach the plant through the OT bridge.
			select {
			case got := <-fromGuest:
				if want := "guest says hi from " + lab.GateDownlinkIP + ":"; !strings.HasPrefix(got, want) {
					t.Errorf("plant listener got %q, want prefix %q", got, want)
				}
			case <-ctx.Done():
				t.Fatalf("guest never connected to the plant: %v", ctx.Err())
			}
			// The plant learnt the guest's eth1 MAC (the board's second NIC).
			if out, err := l.Plant.Command("ip", "neigh", "show", lab.GateDownlinkIP).CombinedOutput(); err != nil ||
				!strings.Contains(string(out), "52:54:00:0e:0a:11") {
				t.Errorf("plant neighbour entry for %s: %v %q, want MAC 52:54:00:0e:0a:11", lab.GateDownlinkIP, err, out)
			}
			hello(ctx, t, "plant", l.Plant, lab.GateDownlinkIP+":7777")
			// The uplink tap's host side is in the lab namespace.
			hello(ctx, t, "lab", l.Uplink, lab.GateUplinkIP+":7777")

			if err := vm.Quit(ctx); err != nil {
				t.Fatal(err)
			}
			exit, err := vm.Wait(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if r := exit.ShutdownReason(); r != "host-qmp-quit" {
				t.Errorf("after Quit: shutdown reason %q, want host-qmp-quit (%s)", r, exit)
			}
		})
	}
}

func hello(ctx context.Context, t *testing.T, from string, ns *lab.Namespace, addr string) {
	t.Helper()
	dctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	c, err := ns.DialContext(dctx, "tcp", addr)
	if err != nil {
		t.Errorf("from %s: %v", from, err)
		return
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || line != "hello from testinit\n" {
		t.Errorf("from %s to %s: got %q, %v", from, addr, line, err)
	}
}

// TestLabDHCP: the gate's uplink gets its address from the lab's DHCP
// server and is then reachable from the lab namespace.
func TestLabDHCP(t *testing.T) {
	b := mustBoard(t, "qemu-x86_64")
	requireQEMU(t, b, "nsenter", "dnsmasq")
	img := testImage(t, b)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	l, err := lab.New(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	srv, err := l.StartDHCP(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	vm := StartT(t, b, "", img, WithLab(l), WithCmdline("testinit.dhcp=eth0", "testinit.listen=7777", "testinit.then=wait"))
	line, err := vm.WaitFor(ctx, "testinit: dhcp eth0")
	if err != nil {
		t.Fatal(err)
	}
	if want := "testinit: dhcp eth0 " + lab.GateUplinkIP + "/24 from 192.0.2.1"; line != want {
		t.Fatalf("got %q, want %q", line, want)
	}
	if _, err := vm.WaitFor(ctx, "testinit: listening 7777"); err != nil {
		t.Fatal(err)
	}
	hello(ctx, t, "lab", l.Uplink, lab.GateUplinkIP+":7777")
	leases, err := srv.Leases()
	if err != nil || !strings.Contains(leases, "52:54:00:0e:0a:10 "+lab.GateUplinkIP) {
		t.Errorf("lease file: %v %q, want the gate's eth0 MAC with %s", err, leases, lab.GateUplinkIP)
	}
}

// TestUserNetForward reaches a guest listener through a slirp hostfwd on
// the host's loopback.
func TestUserNetForward(t *testing.T) {
	b := mustBoard(t, "qemu-x86_64")
	requireQEMU(t, b)
	img := testImage(t, b)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	vm := StartT(t, b, "", img, WithUserNet(HostForward{GuestPort: 7777}), WithCmdline(
		"testinit.addr=eth0=10.0.2.15/24", "testinit.listen=7777", "testinit.then=wait"))
	if _, err := vm.WaitFor(ctx, "testinit: listening 7777"); err != nil {
		t.Fatal(err)
	}
	t.Logf("guest listening after %s", time.Since(vm.Started()).Round(time.Millisecond))
	port := vm.HostPort(7777)
	if port == 0 {
		t.Fatal("no host port for guest port 7777")
	}
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || line != "hello from testinit\n" {
		t.Fatalf("through hostfwd 127.0.0.1:%d: got %q, %v", port, line, err)
	}
	t.Logf("answer after %s", time.Since(vm.Started()).Round(time.Millisecond))
}

// A host port Start picked and another program took before QEMU bound it
// (the hook takes every picked port once) makes QEMU exit at once; Start
// picks new ports and the forward works.
func TestUserNetForwardPortTaken(t *testing.T) {
	b := mustBoard(t, "qemu-x86_64")
	requireQEMU(t, b)
	img := testImage(t, b)
	var stolen []int
	afterPickHook = func(fwd []HostForward) {
		if len(stolen) > 0 {
			return
		}
		for _, f := range fwd {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", f.HostPort))
			if err != nil {
				t.Errorf("take port %d: %v", f.HostPort, err)
				continue
			}
			t.Cleanup(func() { l.Close() })
			stolen = append(stolen, f.HostPort)
		}
	}
	t.Cleanup(func() { afterPickHook = nil })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	vm := StartT(t, b, "", img, WithUserNet(HostForward{GuestPort: 7777}), WithCmdline(
		"testinit.addr=eth0=10.0.2.15/24", "testinit.listen=7777", "testinit.then=wait"))
	if _, err := vm.WaitFor(ctx, "testinit: listening 7777"); err != nil {
		t.Fatal(err)
	}
	port := vm.HostPort(7777)
	if len(stolen) != 1 || port == 0 || port == stolen[0] {
		t.Fatalf("host port %d, stolen %v: want another port than the stolen one", port, stolen)
	}
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || line != "hello from testinit\n" {
		t.Fatalf("through hostfwd 127.0.0.1:%d: got %q, %v", port, line, err)
	}
}
