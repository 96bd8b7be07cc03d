// Package lab builds the network a gate VM is tested in, entirely inside
// private network namespaces so nothing touches the host's own network:
//
//	lab namespace                                plant namespace
//	  gate-up  (tap, 192.0.2.1/24) <- gate eth0 (uplink)
//	  gate-ot  (tap) --+
//	                   ot0 (bridge) -- ot0-plant ==veth== eth0 (10.77.0.20/24)
//	                                        <- gate eth1 (OT downlink, 10.77.0.1)
//
// The namespaces are held by file descriptors of this process, never named
// in /run/netns: when the lab is closed, or this process dies, every
// interface, bridge and tap goes with them. Close also kills any process
// still running inside either namespace.
//
// The taps are opened by the lab itself (not persistent); the QEMU harness
// hands their descriptors to QEMU (-netdev tap,fd=N), so QEMU itself can run
// in the host namespace.
package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"

	"github.com/otgate/otgate/board"
	"github.com/vishvananda/netlink"
)

// Interface names and addresses of the lab. They exist only inside the lab's
// namespaces.
const (
	UplinkTap    = "gate-up"   // in the lab namespace: the host side of the gate's uplink
	DownlinkTap  = "gate-ot"   // in the lab namespace: the host side of the gate's OT downlink
	Bridge       = "ot0"       // in the lab namespace: the OT switch
	PlantVethLab = "ot0-plant" // in the lab namespace: the bridge port towards the plant
	PlantIface   = "eth0"      // in the plant namespace

	UplinkHostCIDR = "192.0.2.1/24"  // on UplinkTap
	GateUplinkIP   = "192.0.2.10"    // what the gate's uplink gets (DHCP or static)
	GateDownlinkIP = "10.77.0.1"     // the gate's address on the OT side
	PlantCIDR      = "10.77.0.20/24" // on the plant's PlantIface: the first asset (a PLC)
	PlantPrefix    = "10.77.0.0/24"
)

// Lab is a running lab network. Create it with New, always Close it.
type Lab struct {
	// Uplink is the lab namespace: the uplink tap's host side, the OT
	// bridge and its taps live here.
	Uplink *Namespace
	// Plant is the namespace of the simulated OT assets.
	Plant *Namespace

	mu     sync.Mutex
	taps   map[board.Role]*os.File
	closed bool
	// extra namespaces (VLAN access ports) and the relays to stop first.
	extra []*Namespace
	stops []func()
}

// New builds the lab. The context bounds the set-up only. On error nothing
// is left behind.
func New(ctx context.Context) (l *Lab, err error) {
	l = &Lab{taps: map[board.Role]*os.File{}}
	defer func() {
		if err != nil {
			_ = l.Close()
			l = nil
		}
	}()
	if l.Uplink, err = newNamespace("lab"); err != nil {
		return nil, err
	}
	if l.Plant, err = newNamespace("plant"); err != nil {
		return nil, err
	}
	steps := []struct {
		what string
		fn   func() error
	}{
		{"open taps", l.openTaps},
		{"configure lab namespace", l.configureLab},
		{"configure plant namespace", l.configurePlant},
	}
	for _, s := range steps {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("lab: %s: %w", s.what, err)
		}
		if err := s.fn(); err != nil {
			return nil, fmt.Errorf("lab: %s: %w", s.what, err)
		}
	}
	return l, nil
}

func (l *Lab) openTaps() error {
	for role, name := range map[board.Role]string{board.Uplink: UplinkTap, board.Downlink: DownlinkTap} {
		var f *os.File
		err := l.Uplink.Do(func() error {
			var err error
			f, err = openTap(name)
			return err
		})
		if err != nil {
			return err
		}
		l.taps[role] = f
	}
	return nil
}

func (l *Lab) configureLab() error {
	h, err := netlink.NewHandleAt(l.Uplink.handle)
	if err != nil {
		return fmt.Errorf("netlink handle: %w", err)
	}
	defer h.Close()
	for _, name := range []string{"lo", UplinkTap, DownlinkTap} {
		if err := linkUp(h, name); err != nil {
			return err
		}
	}
	if err := addAddr(h, UplinkTap, UplinkHostCIDR); err != nil {
		return err
	}
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: Bridge}}
	if err := h.LinkAdd(br); err != nil {
		return fmt.Errorf("add bridge %s: %w", Bridge, err)
	}
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: PlantVethLab},
		PeerName:      PlantIface,
		PeerNamespace: netlink.NsFd(int(l.Plant.handle)),
	}
	if err := h.LinkAdd(veth); err != nil {
		return fmt.Errorf("add veth %s <-> plant %s: %w", PlantVethLab, PlantIface, err)
	}
	for _, port := range []string{DownlinkTap, PlantVethLab} {
		link, err := h.LinkByName(port)
		if err != nil {
			return fmt.Errorf("find %s: %w", port, err)
		}
		if err := h.LinkSetMaster(link, br); err != nil {
			return fmt.Errorf("attach %s to bridge %s: %w", port, Bridge, err)
		}
	}
	for _, name := range []string{PlantVethLab, Bridge} {
		if err := linkUp(h, name); err != nil {
			return err
		}
	}
	return nil
}

func (l *Lab) configurePlant() error {
	h, err := netlink.NewHandleAt(l.Plant.handle)
	if err != nil {
		return fmt.Errorf("netlink handle: %w", err)
	}
	defer h.Close()
	for _, name := range []string{"lo", PlantIface} {
		if err := linkUp(h, name); err != nil {
			return err
		}
	}
	return addAddr(h, PlantIface, PlantCIDR)
}

func linkUp(h *netlink.Handle, name string) error {
	link, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("find %s: %w", name, err)
	}
	if err := h.LinkSetUp(link); err != nil {
		return fmt.Errorf("set %s up: %w", name, err)
	}
	return nil
}

func addAddr(h *netlink.Handle, name, cidr string) error {
	link, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("find %s: %w", name, err)
	}
	a, err := netlink.ParseAddr(cidr)
	if err != nil {
		return fmt.Errorf("parse %s: %w", cidr, err)
	}
	if err := h.AddrAdd(link, a); err != nil {
		return fmt.Errorf("add %s to %s: %w", cidr, name, err)
	}
	return nil
}

// Tap returns the open tap device that serves the gate NIC of the given
// role. The lab keeps ownership: do not close it.
func (l *Lab) Tap(role board.Role) (*os.File, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, errors.New("lab: closed")
	}
	f, ok := l.taps[role]
	if !ok {
		return nil, fmt.Errorf("lab: no tap for NIC role %q (have uplink, downlink)", role)
	}
	return f, nil
}

// PlantIP is the address of the first simulated asset.
func PlantIP() net.IP {
	ip, _, _ := net.ParseCIDR(PlantCIDR)
	return ip
}

// Close kills every process left in the lab's namespaces, closes the taps
// and releases the namespaces, which the kernel then destroys with all
// their interfaces. It is safe to call more than once.
func (l *Lab) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	for _, stop := range l.stops {
		stop()
	}
	var errs []error
	for _, f := range l.taps {
		if err := f.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	for _, n := range append(l.extra, l.Plant, l.Uplink) {
		if n != nil {
			errs = append(errs, n.close())
		}
	}
	return errors.Join(errs...)
}
