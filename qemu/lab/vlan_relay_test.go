package lab

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The positive controls for TestVLANAccessIsolatedFromUntagged: the relay
// really is the VLAN 100 access port of the OT switch, checked on the host
// with hand-built 802.1Q frames (the host kernel has no 8021q module, so
// nothing here can tag or untag a frame except the relay under test).

var (
	vlanAccessIP = [4]byte{10, 77, 100, 20} // the asset behind the VLAN 100 access port
	vlanTrunkIP  = [4]byte{10, 77, 100, 99} // a VLAN 100 host on the trunk side (the gate, say)
)

// A frame tagged VID 100 injected at the trunk side of the OT bridge (the
// plant's port) arrives in the VLAN 100 access namespace untagged: its UDP
// socket gets the payload and a packet socket there sees a plain IPv4
// frame with no VLAN tag. The same datagram untagged, or tagged VID 200,
// does not arrive.
func TestVLANRelayUntagsItsVLANFromTrunk(t *testing.T) {
	requireRoot(t)
	l, v := newVLANLab(t)
	plantMAC, accessMAC := nsMAC(t, l.Plant, PlantIface), nsMAC(t, v, PlantIface)

	var conn net.PacketConn
	if err := v.Do(func() error {
		var err error
		conn, err = net.ListenPacket("udp4", net.IP(vlanAccessIP[:]).String()+":0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	port := uint16(conn.LocalAddr().(*net.UDPAddr).Port)
	accessTap := nsPacketSocket(t, v, PlantIface)
	trunk := nsPacketSocket(t, l.Plant, PlantIface)

	frames := []struct {
		vid     int // 0: untagged
		payload string
		crosses bool
	}{
		{0, "untagged: must not cross", false},
		{200, "vlan 200: must not cross", false},
		{100, "vlan 100: crosses", true},
	}
	for _, f := range frames {
		frame := udpFrame(accessMAC, plantMAC, f.vid, vlanTrunkIP, vlanAccessIP, 40000, port, []byte(f.payload))
		if _, err := unix.Write(trunk, frame); err != nil {
			t.Fatalf("inject %q at the plant's %s: %v", f.payload, PlantIface, err)
		}
	}

	// The frame seen on the access link carries no tag, in band or out.
	want := []byte("vlan 100: crosses")
	got, ok := frameHolding(captureFrames(t, accessTap, want, 10*time.Second, 0), want)
	if !ok {
		t.Fatalf("no frame carrying %q reached the VLAN 100 access link in 10s", want)
	}
	if got.status&unix.TP_STATUS_VLAN_VALID != 0 {
		t.Errorf("the access link got the frame tagged (tci %#04x), want untagged", got.tci)
	}
	if et := binary.BigEndian.Uint16(got.frame[12:14]); et != unix.ETH_P_IP {
		t.Errorf("the access link got ethertype %#04x, want IPv4 %#04x (untagged)", et, unix.ETH_P_IP)
	}

	// The access namespace's IP stack takes it (a tagged frame would be
	// dropped: it has no VLAN device), and nothing else crosses within a
	// bounded wait after it.
	buf := make([]byte, 2048)
	deadline := time.Now().Add(10 * time.Second)
	seen := false
	for {
		if err := conn.SetReadDeadline(deadline); err != nil {
			t.Fatal(err)
		}
		n, _, err := conn.ReadFrom(buf)
		if isTimeout(err) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range frames {
			if string(buf[:n]) != f.payload {
				continue
			}
			if !f.crosses {
				t.Errorf("VLAN 100 access socket received %q", f.payload)
			} else if !seen {
				seen = true
				deadline = time.Now().Add(time.Second)
			}
		}
	}
	if !seen {
		t.Fatalf("the VLAN 100 access socket did not receive %q in 10s", want)
	}
}

// A datagram the VLAN 100 asset broadcasts leaves the access port tagged
// VID 100 with a complete UDP checksum (the sender's kernel left it to the
// virtual hardware; the relay finishes it), and reaches the trunk side.
// A frame the asset sends already tagged is dropped, as on an access port.
func TestVLANRelayTagsAccessFramesForTrunk(t *testing.T) {
	requireRoot(t)
	l, v := newVLANLab(t)
	trunk := nsPacketSocket(t, l.Plant, PlantIface)
	accessRaw := nsPacketSocket(t, v, PlantIface)
	accessMAC := nsMAC(t, v, PlantIface)

	tagged := []byte("tagged by the asset: must not cross")
	bcast := net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	if _, err := unix.Write(accessRaw, udpFrame(bcast, accessMAC, 100, vlanAccessIP, [4]byte{10, 77, 100, 255}, 40000, 9, tagged)); err != nil {
		t.Fatalf("inject a tagged frame on the access link: %v", err)
	}
	want := []byte("from the VLAN 100 asset")
	err := v.Do(func() error {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IP(vlanAccessIP[:])})
		if err != nil {
			return err
		}
		defer c.Close()
		rc, err := c.SyscallConn()
		if err != nil {
			return err
		}
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_BROADCAST, 1)
		}); err != nil {
			return err
		}
		if serr != nil {
			return serr
		}
		_, err = c.WriteToUDP(want, &net.UDPAddr{IP: net.IPv4(10, 77, 100, 255), Port: 9})
		return err
	})
	if err != nil {
		t.Fatalf("broadcast from the VLAN 100 namespace: %v", err)
	}

	// Frames sent in order may be received out of order (per-CPU
	// backlogs), so the whole capture, up to a second after the wanted
	// frame, is checked for the forbidden one.
	captured := captureFrames(t, trunk, want, 10*time.Second, time.Second)
	got, ok := frameHolding(captured, want)
	if !ok {
		t.Fatalf("no frame carrying %q reached the plant's trunk port in 10s", want)
	}
	frame, vid, isTagged := got.frame, int(got.tci&0xfff), got.status&unix.TP_STATUS_VLAN_VALID != 0
	if !isTagged && binary.BigEndian.Uint16(frame[12:14]) == unix.ETH_P_8021Q {
		vid, isTagged = int(binary.BigEndian.Uint16(frame[14:16])&0xfff), true
		frame = append(frame[:12:12], frame[16:]...)
	}
	if !isTagged || vid != 100 {
		t.Fatalf("trunk got the asset's frame tagged=%v vid=%d, want tagged VID 100", isTagged, vid)
	}
	if err := checkUDPChecksum(frame); err != nil {
		t.Errorf("trunk got the asset's datagram with %v", err)
	}
	if _, ok := frameHolding(captured, tagged); ok {
		t.Errorf("a frame the asset sent tagged reached the trunk")
	}
}

// newVLANLab is a lab with a VLAN 100 access port (10.77.100.20/24).
func newVLANLab(t *testing.T) (*Lab, *Namespace) {
	t.Helper()
	l, err := New(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	v, err := l.AddVLANAccess(100, "10.77.100.20/24")
	if err != nil {
		t.Fatal(err)
	}
	return l, v
}

func nsMAC(t *testing.T, ns *Namespace, ifname string) net.HardwareAddr {
	t.Helper()
	var mac net.HardwareAddr
	if err := ns.Do(func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		mac = ifi.HardwareAddr
		return nil
	}); err != nil {
		t.Fatalf("%s %s: %v", ns.Name(), ifname, err)
	}
	return mac
}

// nsPacketSocket is the relay's own kind of packet socket (all protocols,
// PACKET_AUXDATA, 100 ms receive timeout) on ifname inside ns.
func nsPacketSocket(t *testing.T, ns *Namespace, ifname string) int {
	t.Helper()
	var fd int
	if err := ns.Do(func() error {
		var err error
		fd, err = packetSocket(ifname)
		return err
	}); err != nil {
		t.Fatalf("%s: %v", ns.Name(), err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

type capturedFrame struct {
	frame  []byte
	status uint32
	tci    uint16
}

// captureFrames reads the frames arriving on fd (not ones sent from it)
// until one holds marker and then for grace more, or until wait has passed
// without one, and returns them all.
func captureFrames(t *testing.T, fd int, marker []byte, wait, grace time.Duration) []capturedFrame {
	t.Helper()
	var got []capturedFrame
	buf, oob := make([]byte, 65536), make([]byte, 256)
	for end := time.Now().Add(wait); time.Now().Before(end); {
		n, oobn, _, sa, err := unix.Recvmsg(fd, buf, oob, 0)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			t.Fatalf("read packet socket: %v", err)
		}
		if ll, ok := sa.(*unix.SockaddrLinklayer); !ok || ll.Pkttype == unix.PACKET_OUTGOING || n < 14 {
			continue
		}
		status, tci := auxdata(oob[:oobn])
		got = append(got, capturedFrame{frame: bytes.Clone(buf[:n]), status: status, tci: tci})
		if bytes.Contains(buf[:n], marker) {
			end = time.Now().Add(grace)
		}
	}
	return got
}

// frameHolding returns the first of frames that holds payload.
func frameHolding(frames []capturedFrame, payload []byte) (capturedFrame, bool) {
	for _, f := range frames {
		if bytes.Contains(f.frame, payload) {
			return f, true
		}
	}
	return capturedFrame{}, false
}

// udpFrame builds an Ethernet frame, 802.1Q-tagged with vid unless vid is
// 0, holding an IPv4 UDP datagram with correct header and UDP checksums.
func udpFrame(dst, src net.HardwareAddr, vid int, srcIP, dstIP [4]byte, srcPort, dstPort uint16, payload []byte) []byte {
	f := append(append([]byte{}, dst...), src...)
	if vid != 0 {
		f = binary.BigEndian.AppendUint16(f, unix.ETH_P_8021Q)
		f = binary.BigEndian.AppendUint16(f, uint16(vid))
	}
	f = binary.BigEndian.AppendUint16(f, unix.ETH_P_IP)
	ip := make([]byte, 20+8+len(payload))
	ip[0], ip[8], ip[9] = 0x45, 64, unix.IPPROTO_UDP
	binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)))
	copy(ip[12:], srcIP[:])
	copy(ip[16:], dstIP[:])
	binary.BigEndian.PutUint16(ip[10:], ^onesSum(0, ip[:20]))
	udp := ip[20:]
	binary.BigEndian.PutUint16(udp[0:], srcPort)
	binary.BigEndian.PutUint16(udp[2:], dstPort)
	binary.BigEndian.PutUint16(udp[4:], uint16(len(udp)))
	copy(udp[8:], payload)
	c := ^onesSum(udpPseudoSum(ip), udp)
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(udp[6:], c)
	return append(f, ip...)
}

// checkUDPChecksum verifies the UDP checksum of an untagged IPv4 frame.
func checkUDPChecksum(frame []byte) error {
	if len(frame) < 14+28 || binary.BigEndian.Uint16(frame[12:14]) != unix.ETH_P_IP || frame[14+9] != unix.IPPROTO_UDP {
		return errors.New("not an IPv4 UDP frame")
	}
	ip := frame[14:]
	ip = ip[:binary.BigEndian.Uint16(ip[2:4])]
	udp := ip[int(ip[0]&0x0f)*4:]
	if binary.BigEndian.Uint16(udp[6:8]) == 0 {
		return errors.New("no UDP checksum")
	}
	if s := onesSum(udpPseudoSum(ip), udp); s != 0xffff {
		return fmt.Errorf("a wrong UDP checksum %#04x (sum %#04x, want 0xffff)", binary.BigEndian.Uint16(udp[6:8]), s)
	}
	return nil
}

// udpPseudoSum is the unfolded sum of the IPv4 pseudo-header of the UDP
// datagram in ip.
func udpPseudoSum(ip []byte) uint32 {
	ihl := int(ip[0]&0x0f) * 4
	return uint32(onesSum(0, ip[12:20])) + unix.IPPROTO_UDP + uint32(len(ip)-ihl)
}

// onesSum is the folded one's-complement sum of b (RFC 1071) added to sum.
func onesSum(sum uint32, b []byte) uint16 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return uint16(sum)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
