package proxy

import (
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/otgate/otgate/internal/hostidle"
)

const exchangeSize = 64 // a small request/response, like a Modbus read

// exchanges runs n request/response exchanges of exchangeSize bytes on c
// and appends each round trip time to lat.
func exchanges(c net.Conn, n int, lat []time.Duration) ([]time.Duration, error) {
	req := make([]byte, exchangeSize)
	rsp := make([]byte, exchangeSize)
	for i := 0; i < n; i++ {
		t0 := time.Now()
		if _, err := c.Write(req); err != nil {
			return lat, err
		}
		if _, err := io.ReadFull(c, rsp); err != nil {
			return lat, err
		}
		lat = append(lat, time.Since(t0))
	}
	return lat, nil
}

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	return d[min(len(d)-1, int(float64(len(d))*p))]
}

// measure runs total exchanges spread over conns concurrently and returns
// the sorted latencies and the wall time.
func measure(b *testing.B, conns []net.Conn, total int) ([]time.Duration, time.Duration) {
	per := max(total/len(conns), 1)
	lats := make([][]time.Duration, len(conns))
	var wg sync.WaitGroup
	start := time.Now()
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			lats[i], err = exchanges(c, per, make([]time.Duration, 0, per))
			if err != nil {
				b.Error(err)
			}
		}()
	}
	wg.Wait()
	wall := time.Since(start)
	all := slices.Concat(lats...)
	slices.Sort(all)
	return all, wall
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// BenchmarkLatency compares small request/response exchanges through the
// gate (TLS 1.3 tunnel, decision, relay with a payload record per chunk)
// with the same exchanges straight to the echo asset and through a plain
// Go relay (io.Copy each way, nothing else: what one more Go process on
// the path costs on this machine), in the same run.
func BenchmarkLatency(b *testing.B) {
	g := startBenchGate(b)
	_, relayAddr := startChild(b, "go relay", goRelayEnv+"="+g.echo)
	fmt.Printf("BenchmarkLatency: %s\n", hostidle.Describe())
	for _, n := range []int{1, 16, 256} {
		b.Run(fmt.Sprintf("sessions=%d", n), func(b *testing.B) {
			type path struct {
				name  string
				conns []net.Conn
				lat   []time.Duration
				wall  time.Duration
			}
			direct, relay, gate := &path{name: "direct"}, &path{name: "relay"}, &path{name: "gate"}
			paths := []*path{direct, relay, gate}
			for range n {
				direct.conns = append(direct.conns, g.dial(b, false))
				rc, err := net.Dial("tcp", relayAddr)
				if err != nil {
					b.Fatal(err)
				}
				relay.conns = append(relay.conns, rc)
				gate.conns = append(gate.conns, g.dial(b, true))
			}
			defer func() {
				for _, p := range paths {
					for _, c := range p.conns {
						c.Close()
					}
				}
			}()
			total := max(b.N, 20*n, 2000)
			for _, p := range paths {
				measure(b, p.conns, n*10) // warm up
			}
			b.ResetTimer()
			// Interleaved rounds, the order rotating, so that every path
			// meets the same machine: on this VM a process's wake-up
			// costs 10 or 60 us depending on where the scheduler placed
			// it, and that placement changes between seconds.
			for r := range latencyRounds {
				for i := range paths {
					p := paths[(r+i)%len(paths)]
					l, w := measure(b, p.conns, max(total/latencyRounds, n))
					p.lat, p.wall = append(p.lat, l...), p.wall+w
				}
			}
			b.StopTimer()
			for _, p := range paths {
				slices.Sort(p.lat)
				b.ReportMetric(us(percentile(p.lat, .5)), p.name+"-p50-us")
				b.ReportMetric(us(percentile(p.lat, .99)), p.name+"-p99-us")
				b.ReportMetric(float64(len(p.lat))/p.wall.Seconds(), p.name+"-exch/s")
			}
			added := func(p *path, q float64) float64 { return us(percentile(p.lat, q) - percentile(direct.lat, q)) }
			b.ReportMetric(added(gate, .5), "added-p50-us")
			b.ReportMetric(added(gate, .99), "added-p99-us")
			b.ReportMetric(added(relay, .5), "relay-added-p50-us")
			b.ReportMetric(added(relay, .99), "relay-added-p99-us")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// BenchmarkThroughput streams through 1, 16 and 256 sessions: bytes are
// echoed back, so each byte crosses the gate twice.
func BenchmarkThroughput(b *testing.B) {
	g := startBenchGate(b)
	const chunk = 32 << 10
	for _, n := range []int{1, 16, 256} {
		for _, via := range []bool{false, true} {
			name := fmt.Sprintf("sessions=%d/path=direct", n)
			if via {
				name = fmt.Sprintf("sessions=%d/path=gate", n)
			}
			b.Run(name, func(b *testing.B) {
				conns := make([]net.Conn, n)
				for i := range conns {
					conns[i] = g.dial(b, via)
				}
				per := max(b.N/n, 1)
				b.SetBytes(chunk)
				b.ResetTimer()
				var wg sync.WaitGroup
				for _, c := range conns {
					wg.Add(2)
					go func() {
						defer wg.Done()
						buf := make([]byte, chunk)
						for range per {
							if _, err := c.Write(buf); err != nil {
								b.Error(err)
								return
							}
						}
					}()
					go func() {
						defer wg.Done()
						if _, err := io.CopyN(io.Discard, c, int64(per)*chunk); err != nil {
							b.Error(err)
						}
					}()
				}
				wg.Wait()
				b.StopTimer()
				for _, c := range conns {
					c.Close()
				}
			})
		}
	}
}

// BenchmarkIdleSessions opens 1,000 sessions through the gate, each after
// one small exchange, and reports the gate process's memory per session.
// The measurement is made once, whatever b.N.
func BenchmarkIdleSessions(b *testing.B) {
	const n = 1000
	{
		g := startBenchGate(b)
		rss0, heap0, stack0, _ := g.mem(b)
		conns := make([]net.Conn, 0, n)
		for range n {
			c := g.dial(b, true)
			if _, err := exchanges(c, 1, nil); err != nil {
				b.Fatal(err)
			}
			conns = append(conns, c)
		}
		time.Sleep(time.Second) // let the handshake garbage become collectable
		rss1, heap1, stack1, live := g.mem(b)
		if live != n {
			b.Fatalf("%d live sessions at the gate, want %d", live, n)
		}
		b.ReportMetric(float64(rss1-rss0)/n/1024, "rss-KiB/session")
		b.ReportMetric(float64((heap1-heap0)+(stack1-stack0))/n/1024, "heap+stack-KiB/session")
		b.ReportMetric(0, "ns/op")
		for _, c := range conns {
			c.Close()
		}
	}
}
