package modbus_test

import (
	"encoding/binary"
	"net"
	"os"
	"sync"
	"time"
)

// segment is one chunk of bytes seen on the client side of the gate.
type segment struct {
	at       time.Time
	toServer bool // client -> gate
	data     []byte
}

// tapConn records what passes through a connection, in order.
type tapConn struct {
	net.Conn
	mu   *sync.Mutex
	segs *[]segment
}

func (c tapConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.mu.Lock()
		*c.segs = append(*c.segs, segment{time.Now(), true, append([]byte(nil), b[:n]...)})
		c.mu.Unlock()
	}
	return n, err
}

func (c tapConn) Write(b []byte) (int, error) {
	// Record before writing so the order matches what the client sees.
	c.mu.Lock()
	*c.segs = append(*c.segs, segment{time.Now(), false, append([]byte(nil), b...)})
	c.mu.Unlock()
	return c.Conn.Write(b)
}

// writePcap writes segs as an Ethernet/IPv4/TCP capture of one connection
// from 127.0.0.1:40000 to 127.0.0.1:502 (the Modbus/TCP port, so tshark's
// mbtcp dissector picks it up), with a handshake and coherent sequence
// numbers so TCP reassembly works.
func writePcap(path string, segs []segment) error {
	var out []byte
	le := binary.LittleEndian
	hdr := make([]byte, 24)
	le.PutUint32(hdr[0:], 0xa1b2c3d4)
	le.PutUint16(hdr[4:], 2)
	le.PutUint16(hdr[6:], 4)
	le.PutUint32(hdr[16:], 65535)
	le.PutUint32(hdr[20:], 1) // LINKTYPE_ETHERNET
	out = append(out, hdr...)
	seq := [2]uint32{1000, 5000} // client, server
	const syn, ack, psh = 0x02, 0x10, 0x08
	packet := func(at time.Time, toServer bool, flags byte, payload []byte) {
		src, dst := 0, 1
		sport, dport := uint16(40000), uint16(502)
		if !toServer {
			src, dst, sport, dport = 1, 0, 502, 40000
		}
		tcp := make([]byte, 20)
		binary.BigEndian.PutUint16(tcp[0:], sport)
		binary.BigEndian.PutUint16(tcp[2:], dport)
		binary.BigEndian.PutUint32(tcp[4:], seq[src])
		if flags&ack != 0 {
			binary.BigEndian.PutUint32(tcp[8:], seq[dst])
		}
		tcp[12] = 5 << 4
		tcp[13] = flags
		binary.BigEndian.PutUint16(tcp[14:], 65535)
		ip := make([]byte, 20)
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(20+20+len(payload)))
		ip[8], ip[9] = 64, 6
		copy(ip[12:], []byte{127, 0, 0, 1})
		copy(ip[16:], []byte{127, 0, 0, 1})
		var sum uint32
		for i := 0; i < 20; i += 2 {
			sum += uint32(binary.BigEndian.Uint16(ip[i:]))
		}
		for sum > 0xffff {
			sum = sum&0xffff + sum>>16
		}
		binary.BigEndian.PutUint16(ip[10:], ^uint16(sum))
		eth := []byte{0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 1, 0x08, 0x00}
		if !toServer {
			eth = []byte{0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 2, 0x08, 0x00}
		}
		frame := append(append(append(eth, ip...), tcp...), payload...)
		rec := make([]byte, 16)
		le.PutUint32(rec[0:], uint32(at.Unix()))
		le.PutUint32(rec[4:], uint32(at.Nanosecond()/1000))
		le.PutUint32(rec[8:], uint32(len(frame)))
		le.PutUint32(rec[12:], uint32(len(frame)))
		out = append(append(out, rec...), frame...)
		seq[src] += uint32(len(payload))
		if flags&syn != 0 {
			seq[src]++
		}
	}
	start := time.Now()
	if len(segs) > 0 {
		start = segs[0].at.Add(-time.Millisecond)
	}
	packet(start, true, syn, nil)
	packet(start, false, syn|ack, nil)
	packet(start, true, ack, nil)
	for _, s := range segs {
		packet(s.at, s.toServer, psh|ack, s.data)
	}
	return os.WriteFile(path, out, 0o644)
}
