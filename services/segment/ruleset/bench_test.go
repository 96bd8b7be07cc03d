package ruleset_test

import (
	"fmt"
	"io"
	"net"
	"slices"
	"sort"
	"syscall"
	"testing"
	"time"

	"github.com/otgate/otgate/services/segment/internal/nslab"
	"github.com/otgate/otgate/services/segment/ruleset"
	"golang.org/x/sys/unix"
)

// manyAssets returns a spec with n assets (two ports each, 64 per zone,
// zones alternating enforce/monitor); asset 0 is the lab's plc at Asset1.
func manyAssets(n int) *ruleset.Spec {
	s := &ruleset.Spec{BaselineSpec: baseSpec()}
	for i := 0; i < n; i++ {
		addr := fmt.Sprintf("10.100.%d.%d", i/250, i%250+1)
		if i == 0 {
			addr = nslab.Asset1
		}
		zone := i / 64
		mode := ruleset.ModeEnforce
		if zone%2 == 1 {
			mode = ruleset.ModeMonitor
		}
		s.Assets = append(s.Assets, ruleset.Asset{Name: fmt.Sprintf("asset-%d", i), Zone: fmt.Sprintf("zone-%d", zone),
			Mode: mode, Address: addr, TCPPorts: []uint16{502, 44818}})
	}
	for i := 0; i < 8; i++ {
		s.Exceptions = append(s.Exceptions, ruleset.Exception{ID: fmt.Sprintf("x-%d", i), From: nslab.Asset1,
			To: fmt.Sprintf("10.100.0.%d", i+2), Protocol: "tcp", Port: 502, Owner: "ops", Expires: time.Now().Add(time.Hour)})
	}
	return s
}

// BenchmarkApply times one atomic replacement of the whole table.
func BenchmarkApply(b *testing.B) {
	l := nslab.New(b)
	conn := gateConn(b, l)
	for _, n := range []int{16, 256, 4096} {
		spec := manyAssets(n)
		b.Run(fmt.Sprintf("assets=%d", n), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				if _, err := ruleset.Apply(conn, spec, time.Now()); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/apply")
		})
	}
}

// pathFigures measures, from the proxy's identity in the gate namespace to
// the lab's plc, the TCP connection setup rate and one connection's
// throughput, each for d, and appends each connection's setup time to
// setup.
func pathFigures(b *testing.B, l *nslab.Lab, d time.Duration, setup *[]time.Duration) (connsPerSec, mbPerSec float64) {
	b.Helper()
	err := l.Gate.Do(func() error {
		unix.Setfsuid(int(proxy.UID))
		dialer := net.Dialer{Timeout: 10 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			if err := rc.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(proxy.Mark))
			}); err != nil {
				return err
			}
			return serr
		}}
		n := 0
		start := time.Now()
		for time.Since(start) < d {
			t0 := time.Now()
			c, err := dialer.Dial("tcp4", nslab.Asset1+":502")
			if err != nil {
				return fmt.Errorf("connect %d: %w", n, err)
			}
			*setup = append(*setup, time.Since(t0))
			_ = c.(*net.TCPConn).SetLinger(0) // RST: no TIME_WAIT pile-up
			c.Close()
			n++
		}
		connsPerSec = float64(n) / time.Since(start).Seconds()

		c, err := dialer.Dial("tcp4", nslab.Asset1+":502")
		if err != nil {
			return err
		}
		defer c.Close()
		buf := make([]byte, 64<<10)
		var sent int64
		start = time.Now()
		for time.Since(start) < d {
			m, err := c.Write(buf)
			sent += int64(m)
			if err != nil && err != io.ErrShortWrite {
				return err
			}
		}
		mbPerSec = float64(sent) / 1e6 / time.Since(start).Seconds()
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return connsPerSec, mbPerSec
}

// BenchmarkAllowedPath compares the allowed path with 16 and with 4096
// assets installed, in the same run: each iteration measures both rulesets
// back to back (in alternating order) so machine load affects both alike,
// and the figures are medians over the iterations: at least
// minPathRounds, whatever b.N (one iteration takes two seconds, so the
// default -benchtime would give a median of one). The ratios (4096 / 16)
// are the figures to watch: 1.0 means the per-packet cost does not grow
// with the number of assets.
func BenchmarkAllowedPath(b *testing.B) {
	l := nslab.New(b)
	l.Plant.Listen(b, nslab.Asset1+":502")
	conn := gateConn(b, l)
	small, large := manyAssets(16), manyAssets(4096)
	const round = 500 * time.Millisecond
	var c16, c4k, t16, t4k, cr, tr []float64
	var s16, s4k []time.Duration // every connection's setup time
	b.ResetTimer()
	for i := 0; i < max(b.N, minPathRounds); i++ {
		measure := func(spec *ruleset.Spec, setup *[]time.Duration) (float64, float64) {
			if _, err := ruleset.Apply(conn, spec, time.Now()); err != nil {
				b.Fatal(err)
			}
			return pathFigures(b, l, round, setup)
		}
		var cs, ts, cl, tl float64
		if i%2 == 0 {
			cs, ts = measure(small, &s16)
			cl, tl = measure(large, &s4k)
		} else {
			cl, tl = measure(large, &s4k)
			cs, ts = measure(small, &s16)
		}
		c16, t16, c4k, t4k = append(c16, cs), append(t16, ts), append(c4k, cl), append(t4k, tl)
		cr, tr = append(cr, cl/cs), append(tr, tl/ts)
	}
	b.ReportMetric(median(c16), "conn/s@16")
	b.ReportMetric(median(c4k), "conn/s@4096")
	b.ReportMetric(median(cr), "conn-ratio")
	// The steadiest figure: the median of every connection's setup time
	// (tens of thousands of samples per ruleset), 4096 over 16. 1.0: the
	// first packet's rule walk does not grow with the number of assets.
	b.ReportMetric(usMedian(s16), "setup-us@16")
	b.ReportMetric(usMedian(s4k), "setup-us@4096")
	b.ReportMetric(usMedian(s4k)/usMedian(s16), "setup-ratio")
	b.ReportMetric(float64(min(len(s16), len(s4k))), "setup-samples")
	b.ReportMetric(median(t16), "MB/s@16")
	b.ReportMetric(median(t4k), "MB/s@4096")
	b.ReportMetric(median(tr), "tput-ratio")
}

func usMedian(d []time.Duration) float64 {
	s := slices.Clone(d)
	slices.Sort(s)
	return float64(s[len(s)/2]) / float64(time.Microsecond)
}

// minPathRounds is BenchmarkAllowedPath's least number of paired rounds.
const minPathRounds = 20

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
