package ruleset_test

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/otgate/otgate/services/segment/internal/nslab"
	"golang.org/x/sys/unix"
)

// Hand-made packets for the tests that need a packet no socket sends: a
// forged ICMP error, a TCP segment injected into another host's connection.

func csum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

func addr4(s string) [4]byte { return netip.MustParseAddr(s).As4() }

// ipv4Header is a 20-byte header (TTL 64, DF) with its checksum.
func ipv4Header(src, dst string, proto byte, payloadLen int) []byte {
	h := make([]byte, 20)
	h[0] = 0x45
	binary.BigEndian.PutUint16(h[2:], uint16(20+payloadLen))
	h[6] = 0x40 // DF
	h[8] = 64
	h[9] = proto
	s, d := addr4(src), addr4(dst)
	copy(h[12:], s[:])
	copy(h[16:], d[:])
	binary.BigEndian.PutUint16(h[10:], csum(h))
	return h
}

// embeddedUDP is what an ICMP error quotes of a UDP datagram src:sport ->
// dst:dport: its IP header and the first 8 bytes of the datagram.
func embeddedUDP(src string, sport uint16, dst string, dport uint16) []byte {
	u := make([]byte, 8)
	binary.BigEndian.PutUint16(u[0:], sport)
	binary.BigEndian.PutUint16(u[2:], dport)
	binary.BigEndian.PutUint16(u[4:], 8+16)
	return append(ipv4Header(src, dst, unix.IPPROTO_UDP, 8+16), u...)
}

// icmpMessage is an ICMP message of type and code with body after the
// 4-byte header (for an error: 4 unused bytes, then the quoted packet).
func icmpMessage(typ, code byte, body []byte) []byte {
	m := append([]byte{typ, code, 0, 0}, body...)
	binary.BigEndian.PutUint16(m[2:], csum(m))
	return m
}

func icmpError(typ, code byte, quoted []byte) []byte {
	return icmpMessage(typ, code, append(make([]byte, 4), quoted...))
}

// tcpPacket is a whole IPv4 packet carrying one TCP segment (ACK|PSH,
// window 64k) with correct checksums.
func tcpPacket(src string, sport uint16, dst string, dport uint16, seq, ack uint32, payload []byte) []byte {
	seg := make([]byte, 20, 20+len(payload))
	binary.BigEndian.PutUint16(seg[0:], sport)
	binary.BigEndian.PutUint16(seg[2:], dport)
	binary.BigEndian.PutUint32(seg[4:], seq)
	binary.BigEndian.PutUint32(seg[8:], ack)
	seg[12] = 5 << 4
	seg[13] = 0x18 // PSH|ACK
	binary.BigEndian.PutUint16(seg[14:], 0xffff)
	seg = append(seg, payload...)
	s, d := addr4(src), addr4(dst)
	pseudo := append(append(append([]byte{}, s[:]...), d[:]...), 0, unix.IPPROTO_TCP, byte(len(seg)>>8), byte(len(seg)))
	binary.BigEndian.PutUint16(seg[16:], csum(append(pseudo, seg...)))
	return append(ipv4Header(src, dst, unix.IPPROTO_TCP, len(seg)), seg...)
}

// rawSocket opens a raw IPv4 socket of proto in ns (IPPROTO_RAW: the caller
// writes the IP header). The socket stays in ns after the call.
func rawSocket(t *testing.T, ns *nslab.NS, proto int) int {
	t.Helper()
	fd := -1
	err := ns.Do(func() (err error) {
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
		return err
	})
	if err != nil {
		t.Fatalf("raw socket (proto %d) in %s: %v", proto, ns.Name, err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

// sendICMP sends an ICMP message from ns to dst (the kernel writes the IP
// header; its source is the address of ns's route to dst).
func sendICMP(t *testing.T, ns *nslab.NS, dst string, msg []byte) {
	t.Helper()
	fd := rawSocket(t, ns, unix.IPPROTO_ICMP)
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrInet4{Addr: addr4(dst)}); err != nil {
		t.Fatalf("send ICMP from %s to %s: %v", ns.Name, dst, err)
	}
}

// sendIP sends a whole IPv4 packet (header included, any source) from ns.
func sendIP(t *testing.T, ns *nslab.NS, pkt []byte) {
	t.Helper()
	fd := rawSocket(t, ns, unix.IPPROTO_RAW)
	var dst [4]byte
	copy(dst[:], pkt[16:20])
	if err := unix.Sendto(fd, pkt, 0, &unix.SockaddrInet4{Addr: dst}); err != nil {
		t.Fatalf("send raw IP packet from %s: %v", ns.Name, err)
	}
}

// icmpSeen is a sniffer of the ICMP messages ns receives (a raw ICMP
// socket gets a copy of each).
type icmpSeen struct{ fd int }

func sniffICMP(t *testing.T, ns *nslab.NS) *icmpSeen {
	t.Helper()
	return &icmpSeen{rawSocket(t, ns, unix.IPPROTO_ICMP)}
}

// wait reports whether an ICMP message of type typ whose quoted packet's
// destination port is quotedDport arrives within d (messages that are not
// that one are skipped).
func (s *icmpSeen) wait(typ byte, quotedDport uint16, d time.Duration) bool {
	end := time.Now().Add(d)
	buf := make([]byte, 2048)
	for {
		left := time.Until(end)
		if left <= 0 {
			return false
		}
		tv := unix.NsecToTimeval(left.Nanoseconds())
		_ = unix.SetsockoptTimeval(s.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
		n, _, err := unix.Recvfrom(s.fd, buf, 0)
		if err != nil {
			continue // timeout (the loop ends) or EINTR
		}
		p := buf[:n]
		if len(p) < 20 {
			continue
		}
		ihl := int(p[0]&0xf) * 4
		if len(p) < ihl+8+20+4 || p[ihl] != typ {
			continue
		}
		q := p[ihl+8:]
		qihl := int(q[0]&0xf) * 4
		if len(q) >= qihl+4 && binary.BigEndian.Uint16(q[qihl+2:]) == quotedDport {
			return true
		}
	}
}

// setIPOpt sets an IPPROTO_IP option on a UDP socket.
func setIPOpt(t *testing.T, c *net.UDPConn, opt, v int) {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, opt, v) }); err != nil {
		t.Fatal(err)
	}
	if serr != nil {
		t.Fatalf("setsockopt IPPROTO_IP %d = %d: %v", opt, v, serr)
	}
}
