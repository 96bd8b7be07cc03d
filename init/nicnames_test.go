package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// Ports are listed in hardware path order whatever order the kernel named
// them in; virtual devices and non-eth names are left alone.
func TestEthNICsInHardwareOrder(t *testing.T) {
	root := t.TempDir()
	devs := filepath.Join(root, "devices", "pci0000:00")
	sysNet := filepath.Join(root, "class", "net")
	mk := func(name, dev string) {
		d := filepath.Join(sysNet, name)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if dev != "" {
			p := filepath.Join(devs, dev)
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(p, filepath.Join(d, "device")); err != nil {
				t.Fatal(err)
			}
		}
	}
	// igb probed first (eth0 at 03:00.0), e1000e second (eth1 at 00:1f.6),
	// a second igb port (eth2 at 03:00.1); a bridge and a VLAN without a
	// device; a wlan with one.
	mk("eth0", "0000:00:1c.0/0000:03:00.0")
	mk("eth1", "0000:00:1f.6")
	mk("eth2", "0000:00:1c.0/0000:03:00.1")
	mk("br0", "")
	mk("eth0.100", "")
	mk("wlan0", "0000:00:14.3")
	nics, err := ethNICs(sysNet)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, n := range nics {
		names = append(names, n.name)
	}
	if want := []string{"eth0", "eth2", "eth1"}; !reflect.DeepEqual(names, want) {
		t.Fatalf("order %v, want %v (by PCI path: 00:1c.0/03:00.0, 00:1c.0/03:00.1, 00:1f.6)", names, want)
	}
	want := [][2]string{{"eth2", "otgnic1"}, {"eth1", "otgnic2"}, {"otgnic1", "eth1"}, {"otgnic2", "eth2"}}
	if got := nicRenames(nics); !reflect.DeepEqual(got, want) {
		t.Fatalf("renames %v, want %v", got, want)
	}
	if got := nicRenames(nics[:1]); len(got) != 0 {
		t.Fatalf("renames %v for names already in order", got)
	}
}

// The renames work on the real kernel: two devices that came up swapped
// end under each other's name (checked by interface index), in a private
// network namespace.
func TestRenameLinksSwapsNames(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root for a network namespace")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("ip (iproute2) not installed")
	}
	errc := make(chan error, 1)
	type idx struct{ a, b int }
	res := make(chan idx, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the namespace
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		if out, err := exec.Command("ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth1").CombinedOutput(); err != nil {
			t.Logf("%s", out)
			errc <- err
			return
		}
		a, _ := net.InterfaceByName("eth0")
		b, _ := net.InterfaceByName("eth1")
		for _, r := range nicRenames([]nic{{name: "eth1"}, {name: "eth0"}}) {
			if err := renameLink(r[0], r[1]); err != nil {
				errc <- err
				return
			}
		}
		a2, err1 := net.InterfaceByName("eth1")
		b2, err2 := net.InterfaceByName("eth0")
		if err1 != nil || err2 != nil || a2.Index != a.Index || b2.Index != b.Index {
			errc <- &net.AddrError{Err: "not swapped", Addr: a2.Name}
			return
		}
		res <- idx{a.Index, b.Index}
		errc <- nil
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	<-res
}
