package netconf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/mdlayher/packet"
	"golang.org/x/sys/unix"
)

// ARP on Ethernet (RFC 826).
const (
	arpLen       = 28
	arpOpRequest = 1
	arpOpReply   = 2
)

var broadcastMAC = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// arpPacket is an Ethernet/IPv4 ARP message.
type arpPacket struct {
	Op        uint16
	SenderMAC net.HardwareAddr
	SenderIP  netip.Addr
	TargetMAC net.HardwareAddr
	TargetIP  netip.Addr
}

func (p arpPacket) marshal() []byte {
	b := make([]byte, arpLen)
	binary.BigEndian.PutUint16(b[0:], 1)      // Ethernet
	binary.BigEndian.PutUint16(b[2:], 0x0800) // IPv4
	b[4], b[5] = 6, 4
	binary.BigEndian.PutUint16(b[6:], p.Op)
	copy(b[8:14], p.SenderMAC)
	s4, t4 := p.SenderIP.As4(), p.TargetIP.As4()
	copy(b[14:18], s4[:])
	copy(b[18:24], p.TargetMAC)
	copy(b[24:28], t4[:])
	return b
}

var errNotARP = errors.New("not an Ethernet/IPv4 ARP message")

func parseARP(b []byte) (arpPacket, error) {
	if len(b) < arpLen || binary.BigEndian.Uint16(b[0:]) != 1 || binary.BigEndian.Uint16(b[2:]) != 0x0800 || b[4] != 6 || b[5] != 4 {
		return arpPacket{}, errNotARP
	}
	p := arpPacket{Op: binary.BigEndian.Uint16(b[6:])}
	p.SenderMAC = net.HardwareAddr(append([]byte(nil), b[8:14]...))
	p.SenderIP = netip.AddrFrom4([4]byte(b[14:18]))
	p.TargetMAC = net.HardwareAddr(append([]byte(nil), b[18:24]...))
	p.TargetIP = netip.AddrFrom4([4]byte(b[24:28]))
	return p, nil
}

// arpConn is an ARP socket bound to one interface: what it sends leaves
// by that interface only, and it reads the ARP traffic seen there.
type arpConn struct {
	c   *packet.Conn
	ifi *net.Interface
}

func openARP(ifname string) (*arpConn, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("netconf: ARP on %s: %w", ifname, err)
	}
	c, err := packet.Listen(ifi, packet.Datagram, unix.ETH_P_ARP, nil)
	if err != nil {
		return nil, fmt.Errorf("netconf: ARP socket on %s: %w", ifname, err)
	}
	return &arpConn{c: c, ifi: ifi}, nil
}

// probe asks who has target, from src, by broadcast on the interface.
func (a *arpConn) probe(src, target netip.Addr) error {
	p := arpPacket{Op: arpOpRequest, SenderMAC: a.ifi.HardwareAddr, SenderIP: src, TargetMAC: make(net.HardwareAddr, 6), TargetIP: target}
	_, err := a.c.WriteTo(p.marshal(), &packet.Addr{HardwareAddr: broadcastMAC})
	return err
}

// read returns the next ARP message received (never the ones this host
// sent: those carry its own sender MAC).
func (a *arpConn) read(buf []byte) (arpPacket, error) {
	for {
		n, _, err := a.c.ReadFrom(buf)
		if err != nil {
			return arpPacket{}, err
		}
		p, err := parseARP(buf[:n])
		if err != nil || (p.Op != arpOpRequest && p.Op != arpOpReply) {
			continue
		}
		if p.SenderMAC.String() == a.ifi.HardwareAddr.String() {
			continue
		}
		return p, nil
	}
}

func (a *arpConn) Close() error { return a.c.Close() }
