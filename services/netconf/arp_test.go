package netconf

import (
	"net"
	"net/netip"
	"reflect"
	"testing"
)

func TestARPRoundTrip(t *testing.T) {
	p := arpPacket{Op: arpOpReply, SenderMAC: net.HardwareAddr{2, 0, 0, 0, 0, 0x10}, SenderIP: netip.MustParseAddr("10.0.0.10"),
		TargetMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, TargetIP: netip.MustParseAddr("10.0.0.1")}
	b := p.marshal()
	q, err := parseARP(b)
	if err != nil || !reflect.DeepEqual(p, q) {
		t.Fatalf("%+v %v, want %+v", q, err, p)
	}
	for _, bad := range [][]byte{b[:27], append([]byte{0, 6}, b[2:]...), append(append([]byte{}, b[:4]...), append([]byte{8, 4}, b[6:]...)...)} {
		if _, err := parseARP(bad); err == nil {
			t.Errorf("parsed bad ARP %x", bad)
		}
	}
}
