package modbus_test

import (
	"io"
	"net"
	"testing"

	"github.com/otgate/otgate/inspect/modbus"
)

// countSink counts records (the proxy's log cost is not measured here).
type countSink struct{ n int }

func (c *countSink) Record(*modbus.Record) error { c.n++; return nil }

// BenchmarkLoopback runs read-holding transactions against the plant
// server directly and through a loopback relay with the inspector, one at
// a time (latency) and 16 in flight (throughput). tx/s is printed.
func BenchmarkLoopback(b *testing.B) {
	plantAddr := startPlant(b)
	gateAddr := startBenchGate(b, plantAddr)
	for _, depth := range []int{1, 16} {
		for _, target := range []struct{ name, addr string }{{"direct", plantAddr}, {"inspected", gateAddr}} {
			b.Run(target.name+"/depth-"+itoa(depth), func(b *testing.B) {
				c, err := net.Dial("tcp", target.addr)
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				req := make([]byte, 0, 12*depth)
				for i := 0; i < depth; i++ {
					req = append(req, frame(uint16(i), 1, 3, 0, 0, 0, 10)...)
				}
				resp := make([]byte, 29*depth) // 7 + 2 + 20 per response
				b.ResetTimer()
				for i := 0; i < b.N; i += depth {
					if _, err := c.Write(req); err != nil {
						b.Fatal(err)
					}
					if _, err := io.ReadFull(c, resp); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tx/s")
			})
		}
	}
}

func itoa(n int) string {
	if n < 10 {
		return string(rune('0' + n))
	}
	return itoa(n/10) + string(rune('0'+n%10))
}

func startBenchGate(b *testing.B, device string) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	p := policy(b)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			d, err := net.Dial("tcp", device)
			if err != nil {
				c.Close()
				continue
			}
			go modbus.Relay(b.Context(), modbus.Config{Policy: p, Sink: &countSink{}}, c, d)
		}
	}()
	return l.Addr().String()
}
