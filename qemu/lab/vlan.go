package lab

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// A VLAN access port on the lab's OT switch. The switch is a plain bridge:
// the host kernel may have neither 802.1Q (8021q) nor bridge VLAN
// filtering, so this process plays the managed switch's part for one VLAN:
//
//	lab namespace                                    vlan<vid> namespace
//	  ot0 (bridge) -- ot0-v<vid> ==veth== v<vid>-trunk
//	                        relay (this process): tag <-> untag
//	                  v<vid>-access ==veth== eth0 (the asset, untagged)
//
// Frames the bridge floods or forwards to the trunk port that carry VLAN
// <vid> reach the access namespace without their tag; every frame the
// access namespace sends reaches the bridge tagged <vid>. Untagged frames
// and other VLANs never cross, and tagged frames from the access side are
// dropped, as on an access port. The gate (whose kernel has 802.1Q) sees
// the tagged frames on its OT downlink.

// AddVLANAccess adds an access port for VLAN vid to the OT switch and a
// new namespace behind it whose eth0 has cidr (untagged). The namespace
// and the relay go with Close.
func (l *Lab) AddVLANAccess(vid int, cidr string) (*Namespace, error) {
	if vid < 1 || vid > 4094 {
		return nil, fmt.Errorf("lab: VLAN %d: want 1-4094", vid)
	}
	ns, err := newNamespace(fmt.Sprintf("vlan%d", vid))
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		ns.close()
		return nil, errors.New("lab: closed")
	}
	l.extra = append(l.extra, ns)
	l.mu.Unlock()

	port, trunk, access := fmt.Sprintf("ot0-v%d", vid), fmt.Sprintf("v%d-trunk", vid), fmt.Sprintf("v%d-access", vid)
	if err := l.plumbVLANAccess(ns, port, trunk, access, cidr); err != nil {
		return nil, fmt.Errorf("lab: VLAN %d access port: %w", vid, err)
	}
	r := &vlanRelay{vid: vid}
	err = l.Uplink.Do(func() error {
		var err error
		if r.trunk, err = packetSocket(trunk); err != nil {
			return err
		}
		r.access, err = packetSocket(access)
		return err
	})
	if err != nil {
		r.closeSockets()
		return nil, fmt.Errorf("lab: VLAN %d relay: %w", vid, err)
	}
	r.wg.Add(2)
	go r.run(r.trunk, r.access, true)
	go r.run(r.access, r.trunk, false)
	l.mu.Lock()
	l.stops = append(l.stops, r.stop)
	l.mu.Unlock()
	return ns, nil
}

func (l *Lab) plumbVLANAccess(ns *Namespace, port, trunk, access, cidr string) error {
	h, err := netlink.NewHandleAt(l.Uplink.handle, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("netlink handle: %w", err)
	}
	defer h.Close()
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: port}, PeerName: trunk}); err != nil {
		return fmt.Errorf("add veth %s <-> %s: %w", port, trunk, err)
	}
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: access}, PeerName: PlantIface,
		PeerNamespace: netlink.NsFd(int(ns.handle))}); err != nil {
		return fmt.Errorf("add veth %s <-> %s %s: %w", access, ns.name, PlantIface, err)
	}
	br, err := h.LinkByName(Bridge)
	if err != nil {
		return fmt.Errorf("find %s: %w", Bridge, err)
	}
	p, err := h.LinkByName(port)
	if err != nil {
		return fmt.Errorf("find %s: %w", port, err)
	}
	if err := h.LinkSetMaster(p, br); err != nil {
		return fmt.Errorf("attach %s to %s: %w", port, Bridge, err)
	}
	for _, n := range []string{port, trunk, access} {
		if err := linkUp(h, n); err != nil {
			return err
		}
	}
	nh, err := netlink.NewHandleAt(ns.handle, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("netlink handle in %s: %w", ns.name, err)
	}
	defer nh.Close()
	for _, n := range []string{"lo", PlantIface} {
		if err := linkUp(nh, n); err != nil {
			return err
		}
	}
	return addAddr(nh, PlantIface, cidr)
}

// packetSocket opens a raw packet socket on ifname (in the calling
// thread's namespace) that reports VLAN tags and checksum state
// (PACKET_AUXDATA) and wakes every 100 ms to notice a stop.
func packetSocket(ifname string) (int, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return -1, err
	}
	proto := int(htons(unix.ETH_P_ALL))
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return -1, fmt.Errorf("packet socket on %s: %w", ifname, err)
	}
	tv := unix.Timeval{Usec: 100_000}
	for _, step := range []func() error{
		func() error {
			return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index})
		},
		func() error { return unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_AUXDATA, 1) },
		func() error { return unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv) },
	} {
		if err := step(); err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("packet socket on %s: %w", ifname, err)
		}
	}
	return fd, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// vlanRelay moves frames between a trunk port (tagged vid) and an access
// port (untagged).
type vlanRelay struct {
	vid           int
	trunk, access int
	stopped       atomic.Bool
	wg            sync.WaitGroup
}

func (r *vlanRelay) stop() {
	r.stopped.Store(true)
	r.wg.Wait()
	r.closeSockets()
}

func (r *vlanRelay) closeSockets() {
	for _, fd := range []int{r.trunk, r.access} {
		if fd > 0 {
			unix.Close(fd)
		}
	}
}

// run copies frames from one port to the other: from the trunk only those
// of VLAN vid, untagged; from the access port only untagged ones, tagged.
func (r *vlanRelay) run(from, to int, fromTrunk bool) {
	defer r.wg.Done()
	buf := make([]byte, 65536)
	oob := make([]byte, 256)
	for !r.stopped.Load() {
		n, oobn, _, sa, err := unix.Recvmsg(from, buf, oob, 0)
		if err != nil {
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				continue
			}
			return
		}
		if ll, ok := sa.(*unix.SockaddrLinklayer); !ok || ll.Pkttype == unix.PACKET_OUTGOING || n < 14 {
			continue
		}
		frame := buf[:n]
		status, tci := auxdata(oob[:oobn])
		vid, tagged := int(tci&0xfff), status&unix.TP_STATUS_VLAN_VALID != 0
		if !tagged && n >= 18 && binary.BigEndian.Uint16(frame[12:14]) == unix.ETH_P_8021Q {
			vid, tagged = int(binary.BigEndian.Uint16(frame[14:16])&0xfff), true
			frame = append(frame[:12:12], frame[16:]...)
		}
		if status&unix.TP_STATUS_CSUMNOTREADY != 0 {
			fixTransportChecksum(frame)
		}
		var out []byte
		switch {
		case fromTrunk && tagged && vid == r.vid:
			out = frame
		case !fromTrunk && !tagged:
			out = make([]byte, 0, len(frame)+4)
			out = append(out, frame[:12]...)
			out = binary.BigEndian.AppendUint16(out, unix.ETH_P_8021Q)
			out = binary.BigEndian.AppendUint16(out, uint16(r.vid))
			out = append(out, frame[12:]...)
		default:
			continue
		}
		_, _ = unix.Write(to, out)
	}
}

// auxdata returns tp_status and tp_vlan_tci of a PACKET_AUXDATA message
// (struct tpacket_auxdata: status, len, snaplen, mac, net, vlan_tci, ...).
func auxdata(oob []byte) (status uint32, tci uint16) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return 0, 0
	}
	for _, m := range msgs {
		if m.Header.Level == unix.SOL_PACKET && m.Header.Type == unix.PACKET_AUXDATA && len(m.Data) >= 20 {
			return binary.NativeEndian.Uint32(m.Data[0:4]), binary.NativeEndian.Uint16(m.Data[16:18])
		}
	}
	return 0, 0
}

// fixTransportChecksum completes the TCP or UDP checksum of an IPv4 frame
// whose sender left it to the (virtual) hardware: a frame copied from one
// veth to another by a packet socket would otherwise arrive with a
// partial checksum and be dropped.
func fixTransportChecksum(frame []byte) {
	if len(frame) < 34 || binary.BigEndian.Uint16(frame[12:14]) != unix.ETH_P_IP {
		return
	}
	ip := frame[14:]
	ihl := int(ip[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(ip[2:4]))
	if ihl < 20 || total > len(ip) || total <= ihl {
		return
	}
	var off int
	switch ip[9] {
	case unix.IPPROTO_TCP:
		off = 16
	case unix.IPPROTO_UDP:
		off = 6
	default:
		return
	}
	l4 := ip[ihl:total]
	if len(l4) < off+2 {
		return
	}
	l4[off], l4[off+1] = 0, 0
	var sum uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(binary.BigEndian.Uint16(b[i:]))
		}
		if len(b)%2 == 1 {
			sum += uint32(b[len(b)-1]) << 8
		}
	}
	add(ip[12:20]) // source and destination
	sum += uint32(ip[9]) + uint32(len(l4))
	add(l4)
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	c := ^uint16(sum)
	if c == 0 && ip[9] == unix.IPPROTO_UDP {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(l4[off:], c)
}
