package lab

import (
	"context"
	"encoding/binary"
	"net"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// A TCP segment whose checksum the sender left to the hardware gets a
// correct one: the one's-complement sum over the pseudo-header and the
// segment, checksum included, is all ones.
func TestFixTransportChecksum(t *testing.T) {
	frame := make([]byte, 14+20+20+5)
	binary.BigEndian.PutUint16(frame[12:], unix.ETH_P_IP)
	ip := frame[14:]
	ip[0], ip[9] = 0x45, unix.IPPROTO_TCP
	binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)))
	copy(ip[12:], []byte{10, 77, 100, 1, 10, 77, 100, 20})
	tcp := ip[20:]
	binary.BigEndian.PutUint16(tcp[0:], 40000)
	binary.BigEndian.PutUint16(tcp[2:], 502)
	tcp[12], tcp[13] = 5<<4, 0x18
	copy(tcp[20:], "hello")
	binary.BigEndian.PutUint16(tcp[16:], 0xbeef) // a partial sum
	fixTransportChecksum(frame)
	var sum uint32
	for i := 0; i < 8; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(ip[12+i:]))
	}
	sum += unix.IPPROTO_TCP + uint32(len(tcp))
	for i := 0; i+1 < len(tcp); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(tcp[i:]))
	}
	sum += uint32(tcp[len(tcp)-1]) << 8
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	if sum != 0xffff {
		t.Errorf("checksum %#04x: sum %#04x, want 0xffff", binary.BigEndian.Uint16(tcp[16:]), sum)
	}
}

// The VLAN access namespace is its own segment: the untagged plant, told
// the VLAN's subnet is on its link, reaches nobody there (the relay passes
// only frames tagged with the VLAN), and Close removes it all. Isolation
// alone would also hold with no relay at all: the positive controls are in
// vlan_relay_test.go.
func TestVLANAccessIsolatedFromUntagged(t *testing.T) {
	requireRoot(t)
	l, err := New(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	v, err := l.AddVLANAccess(100, "10.77.100.20/24")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := v.Listen("tcp", "10.77.100.20:502")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	err = l.Plant.Do(func() error {
		link, err := netlink.LinkByName(PlantIface)
		if err != nil {
			return err
		}
		_, dst, _ := net.ParseCIDR("10.77.100.0/24")
		return netlink.RouteAdd(&netlink.Route{Dst: dst, LinkIndex: link.Attrs().Index, Scope: netlink.SCOPE_LINK})
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if c, err := l.Plant.DialContext(ctx, "tcp", "10.77.100.20:502"); err == nil {
		c.Close()
		t.Fatal("the untagged plant reached the VLAN 100 namespace")
	}
	if c, err := v.DialContext(context.Background(), "tcp", "10.77.100.20:502"); err != nil {
		t.Fatalf("inside the VLAN namespace: %v (the listener is not up; the check above proves nothing)", err)
	} else {
		c.Close()
	}
	if _, err := l.AddVLANAccess(4095, "10.77.101.20/24"); err == nil {
		t.Error("VLAN 4095 accepted")
	}
}
