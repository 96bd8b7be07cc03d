package plant

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"
)

// rawRequest frames pdu as a Modbus/TCP ADU for unit 1.
func rawRequest(tid uint16, unit byte, pdu ...byte) []byte {
	b := make([]byte, 7, 7+len(pdu))
	binary.BigEndian.PutUint16(b, tid)
	binary.BigEndian.PutUint16(b[4:], uint16(len(pdu)+1))
	b[6] = unit
	return append(b, pdu...)
}

// exchange sends req on c and reads one response ADU.
func exchange(t *testing.T, c net.Conn, req []byte) []byte {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(req); err != nil {
		t.Fatalf("write % x: %v", req, err)
	}
	h := make([]byte, 7)
	if _, err := io.ReadFull(c, h); err != nil {
		t.Fatalf("request % x: no response: %v (the server closed the connection instead of answering)", req, err)
	}
	rest := make([]byte, int(binary.BigEndian.Uint16(h[4:]))-1)
	if _, err := io.ReadFull(c, rest); err != nil {
		t.Fatalf("request % x: short response: %v", req, err)
	}
	return append(h, rest...)
}

// A request framed correctly whose values the specification forbids (a
// quantity out of range, a coil value other than on/off, a byte count
// that does not match the quantity) is answered with exception 03 (or
// 02), as a device does, and the connection goes on; it used to be
// closed without an answer.
func TestIllegalRequestsAnswerAnException(t *testing.T) {
	addr, _ := startServer(t)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cases := []struct {
		name string
		pdu  []byte
		want []byte // function | 0x80, exception
	}{
		{"read holding quantity 0", []byte{3, 0, 0, 0, 0}, []byte{0x83, 3}},
		{"read holding quantity 126", []byte{3, 0, 0, 0, 126}, []byte{0x83, 3}},
		{"read coils quantity 2001", []byte{1, 0, 0, 0x07, 0xd1}, []byte{0x81, 3}},
		{"read input registers quantity 0", []byte{4, 0, 0, 0, 0}, []byte{0x84, 3}},
		{"write single coil 0x1234", []byte{5, 0, 0, 0x12, 0x34}, []byte{0x85, 3}},
		{"write registers byte count 4 for quantity 1", []byte{16, 0, 50, 0, 1, 4, 0, 1, 0, 2}, []byte{0x90, 3}},
		{"write registers quantity 0", []byte{16, 0, 50, 0, 0, 0}, []byte{0x90, 3}},
		{"read holding past 65535", []byte{3, 0xff, 0xff, 0, 2}, []byte{0x83, 2}},
		{"device id code 5", []byte{43, 14, 5, 0}, []byte{0xab, 3}},
	}
	for i, tc := range cases {
		tid := uint16(100 + i)
		resp := exchange(t, c, rawRequest(tid, 1, tc.pdu...))
		want := rawRequest(tid, 1, tc.want...)
		if !bytes.Equal(resp, want) {
			t.Errorf("%s: got % x, want % x", tc.name, resp, want)
		}
	}
	// The connection still serves: valve opening (holding 0) is 20.
	resp := exchange(t, c, rawRequest(7, 1, 3, 0, 0, 0, 1))
	if want := rawRequest(7, 1, 3, 2, 0, 20); !bytes.Equal(resp, want) {
		t.Fatalf("read after the exceptions: got % x, want % x", resp, want)
	}
}

// A client that sends garbage, or half a frame and goes away, loses its
// own connection only: another client is served meanwhile and after.
func TestBadClientsDoNotAffectOthers(t *testing.T) {
	addr, _ := startServer(t)
	good, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	read := rawRequest(1, 1, 3, 0, 0, 0, 1)
	exchange(t, good, read)

	garbage, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer garbage.Close()
	_, _ = garbage.Write([]byte("GET / HTTP/1.1\r\nHost: plc\r\n\r\n"))
	_ = garbage.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := garbage.Read(make([]byte, 16)); err == nil {
		t.Errorf("garbage client got %d bytes back, want its connection closed", n)
	}

	half, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = half.Write(read[:9]) // header and part of the PDU
	stalled, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	_, _ = stalled.Write(read[:3]) // part of a header, then silence
	exchange(t, good, read)
	half.Close()
	time.Sleep(50 * time.Millisecond)
	exchange(t, good, read)
}
