package policy

import (
	"net/netip"
	"sync"
	"testing"
)

// BenchmarkDecide measures one decision on the demo site: an allowed
// request inside a window, and a weekend default deny that must look
// ahead to Monday for its Until.
func BenchmarkDecide(b *testing.B) {
	p := examplePolicy(b)
	for _, bc := range []struct{ name, at string }{
		{"allow-weekday", "2026-12-02T10:00:00+01:00"},
		{"deny-weekend", "2026-12-05T13:00:00+01:00"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			r := Request{User: "alice", Asset: "plc-tank", Protocol: "modbus", Source: netip.MustParseAddr("192.0.2.50"), Time: at(b, bc.at)}
			b.ReportAllocs()
			for b.Loop() {
				p.Decide(r)
			}
		})
	}
}

// TestDecideConcurrent runs decisions from many goroutines while a
// Holder swaps policies (run with -race to check there is no shared
// mutable state).
func TestDecideConcurrent(t *testing.T) {
	var h Holder
	h.Swap(examplePolicy(t))
	tm := at(t, "2026-12-02T10:00:00+01:00")
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				d := h.Load().Decide(Request{User: "alice", Asset: "plc-tank", Protocol: "modbus", Time: tm})
				if !d.Allow {
					t.Errorf("decision changed under concurrency: %+v", d)
					return
				}
			}
		}()
	}
	for range 20 {
		h.Swap(examplePolicy(t))
	}
	wg.Wait()
}
