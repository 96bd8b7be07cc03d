package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The boards name NIC roles by kernel name (eth0 uplink, eth1 downlink),
// and the kernel names Ethernet devices in the order their drivers probe
// them. init loads modules side by side, so on a PC whose ports use
// different drivers (e1000e and igb, say) that order, and with it which
// port is the uplink, could change from one boot to the next. Before any
// interface is up (and before the baseline ruleset names them), init
// renames the eth* devices in the order of their hardware path (the PCI
// bus address, as udev's path-based names do): the same port is the same
// eth<N> on every boot of the same hardware.

// nic is an Ethernet device and its hardware path.
type nic struct {
	name string
	path string // /sys/devices/... of its device
}

// ethNICs lists the eth<N> devices under sysNet (/sys/class/net) that sit
// on a device (not virtual ones), in hardware path order.
func ethNICs(sysNet string) ([]nic, error) {
	ents, err := os.ReadDir(sysNet)
	if err != nil {
		return nil, err
	}
	var nics []nic
	for _, e := range ents {
		n, ok := strings.CutPrefix(e.Name(), "eth")
		if _, err := strconv.Atoi(n); !ok || err != nil {
			continue
		}
		dev, err := filepath.EvalSymlinks(filepath.Join(sysNet, e.Name(), "device"))
		if err != nil {
			continue // virtual: no device
		}
		nics = append(nics, nic{name: e.Name(), path: dev})
	}
	sort.Slice(nics, func(i, j int) bool { return nics[i].path < nics[j].path })
	return nics, nil
}

// nicRenames returns the renames that make nics (in hardware path order)
// eth0, eth1, ...: first every device that must move to a temporary name
// (so that no rename meets a name still taken), then to its final one.
func nicRenames(nics []nic) [][2]string {
	var tmp, final [][2]string
	for i, n := range nics {
		want := "eth" + strconv.Itoa(i)
		if n.name == want {
			continue
		}
		t := "otgnic" + strconv.Itoa(i)
		tmp = append(tmp, [2]string{n.name, t})
		final = append(final, [2]string{t, want})
	}
	return append(tmp, final...)
}

// orderNICs renames the machine's eth* devices into hardware path order
// and logs what it did. A failure is logged; the names are then as the
// kernel gave them (the first failed rename stops the rest).
func orderNICs(log *logger, sysNet string) {
	nics, err := ethNICs(sysNet)
	if err != nil {
		log.Printf("nic names: %v", err)
		return
	}
	renames := nicRenames(nics)
	if len(renames) == 0 {
		return
	}
	var done []string
	for _, r := range renames {
		if err := renameLink(r[0], r[1]); err != nil {
			log.Printf("nic names: rename %s to %s: %v (names as the kernel gave them, partly changed: %v)", r[0], r[1], err, done)
			return
		}
		done = append(done, r[0]+"->"+r[1])
	}
	var order []string
	for i, n := range nics {
		order = append(order, fmt.Sprintf("eth%d=%s", i, filepath.Base(filepath.Dir(n.path))+"/"+filepath.Base(n.path)))
	}
	log.Printf("nic names: put in hardware order (the kernel probed them in another): %s", strings.Join(order, " "))
}

// renameLink renames the (down) interface old to new (SIOCSIFNAME: no
// netlink library in PID 1).
func renameLink(old, new string) error {
	// struct ifreq: the name, then a union whose first bytes hold the new
	// name for SIOCSIFNAME.
	var req struct {
		name    [unix.IFNAMSIZ]byte
		newName [unix.IFNAMSIZ]byte
		_       [8]byte
	}
	if len(old) >= unix.IFNAMSIZ || len(new) >= unix.IFNAMSIZ {
		return fmt.Errorf("interface name too long")
	}
	copy(req.name[:], old)
	copy(req.newName[:], new)
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCSIFNAME, uintptr(unsafe.Pointer(&req))); errno != 0 {
		return errno
	}
	return nil
}
