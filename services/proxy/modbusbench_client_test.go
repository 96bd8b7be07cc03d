package proxy

import (
	"encoding/binary"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// modbusConn is the benchmark's Modbus/TCP client on a raw connection: it
// builds each request ADU with its MBAP header and checks each response
// completely (transaction id, protocol id, length, unit, function, byte
// count, echo), so a path that garbles or drops anything fails the run.
type modbusConn struct {
	c   net.Conn
	tid uint16
	req [12]byte
	rsp [260]byte
}

func newModbusConn(c net.Conn) *modbusConn { return &modbusConn{c: c} }

// Transaction shapes: a read of 10 holding registers and a write single
// register, alternating. The bench grant allows exactly these ranges.
const (
	benchReadStart, benchReadCount = 0, 10
	benchWriteFirst, benchWrites   = 10, 10
	readRespLen                    = 7 + 2 + 2*benchReadCount // MBAP + function + byte count + values
)

// transact runs transaction i of this connection: even i reads holding
// registers 0-9, odd i writes a holding register in 10-19.
func (m *modbusConn) transact(i int) error {
	m.tid++
	r := m.req[:]
	binary.BigEndian.PutUint16(r[0:], m.tid)
	binary.BigEndian.PutUint16(r[2:], 0) // protocol id
	binary.BigEndian.PutUint16(r[4:], 6) // unit + 5-byte PDU
	r[6] = 1                             // unit
	write := i%2 == 1
	if write {
		r[7] = 6
		binary.BigEndian.PutUint16(r[8:], uint16(benchWriteFirst+(i/2)%benchWrites))
		binary.BigEndian.PutUint16(r[10:], uint16(i))
	} else {
		r[7] = 3
		binary.BigEndian.PutUint16(r[8:], benchReadStart)
		binary.BigEndian.PutUint16(r[10:], benchReadCount)
	}
	if _, err := m.c.Write(r); err != nil {
		return fmt.Errorf("send transaction %d: %w", m.tid, err)
	}
	n, err := m.readFrame()
	if err != nil {
		return fmt.Errorf("transaction %d: %w", m.tid, err)
	}
	p := m.rsp[:n]
	if p[7]&0x80 != 0 {
		return fmt.Errorf("transaction %d (function %d): exception %d", m.tid, r[7], p[8])
	}
	if write {
		if string(p) != string(r) {
			return fmt.Errorf("transaction %d: write single register answered % x, want the echo % x", m.tid, p, r)
		}
		return nil
	}
	if n != readRespLen || p[7] != 3 || p[8] != 2*benchReadCount {
		return fmt.Errorf("transaction %d: read holding registers answered % x (%d bytes, want %d)", m.tid, p, n, readRespLen)
	}
	return nil
}

// readFrame reads exactly one response ADU into m.rsp and checks its
// MBAP header against the request.
func (m *modbusConn) readFrame() (int, error) {
	n, want := 0, 7
	for n < want {
		k, err := m.c.Read(m.rsp[n:])
		n += k
		if n >= 6 && want == 7 {
			l := int(binary.BigEndian.Uint16(m.rsp[4:]))
			if l < 2 || l > 254 {
				return n, fmt.Errorf("response MBAP length %d out of range 2..254", l)
			}
			want = 6 + l
		}
		if err != nil && n < want {
			return n, fmt.Errorf("read response (%d of %d bytes): %w", n, want, err)
		}
	}
	if n > want {
		return n, fmt.Errorf("%d bytes after the response: one request was outstanding", n-want)
	}
	if tid := binary.BigEndian.Uint16(m.rsp[0:]); tid != m.tid {
		return n, fmt.Errorf("response transaction id %d, want %d", tid, m.tid)
	}
	if pid := binary.BigEndian.Uint16(m.rsp[2:]); pid != 0 {
		return n, fmt.Errorf("response protocol id %d, want 0", pid)
	}
	if m.rsp[6] != 1 {
		return n, fmt.Errorf("response unit %d, want 1", m.rsp[6])
	}
	return n, nil
}

// loadResult is one closed-loop run.
type loadResult struct {
	tx   int
	wall time.Duration
	lat  []time.Duration // sorted
}

func (r loadResult) perSecond() float64 { return float64(r.tx) / r.wall.Seconds() }

func (r loadResult) pct(p float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	return r.lat[min(len(r.lat)-1, int(float64(len(r.lat))*p))]
}

// sequential runs n transactions one after the other on m, appending their
// round-trip times to lat.
func (m *modbusConn) sequential(n int, lat []time.Duration) ([]time.Duration, error) {
	for i := 0; i < n; i++ {
		t0 := time.Now()
		if err := m.transact(i); err != nil {
			return lat, err
		}
		lat = append(lat, time.Since(t0))
	}
	return lat, nil
}

// closedLoop keeps one request outstanding on every connection for d and
// returns the transactions completed and their latencies.
func closedLoop(conns []*modbusConn, d time.Duration) (loadResult, error) {
	var stop atomic.Bool
	lats := make([][]time.Duration, len(conns))
	errs := make([]error, len(conns))
	var wg sync.WaitGroup
	start := time.Now()
	timer := time.AfterFunc(d, func() { stop.Store(true) })
	defer timer.Stop()
	for k, m := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat := make([]time.Duration, 0, 4096)
			for i := 0; !stop.Load(); i++ {
				t0 := time.Now()
				if err := m.transact(i); err != nil {
					errs[k] = err
					stop.Store(true)
					break
				}
				lat = append(lat, time.Since(t0))
			}
			lats[k] = lat
		}()
	}
	wg.Wait()
	res := loadResult{wall: time.Since(start), lat: slices.Concat(lats...)}
	res.tx = len(res.lat)
	slices.Sort(res.lat)
	for k, err := range errs {
		if err != nil {
			return res, fmt.Errorf("session %d of %d: %w", k, len(conns), err)
		}
	}
	return res, nil
}
