package proxy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"sync/atomic"
	"testing"
	"time"

	"github.com/otgate/otgate/audit"
	"github.com/otgate/otgate/inspect/modbus"
)

// BenchmarkModbusRecord measures the gate's per-transaction recording
// path on its own: the decoded record of one Modbus transaction turned
// into a payload record and appended (buffered, hash-chained, in a real
// log file with its background checkpoints and flushes) the way
// relayModbus's sink does, alternately a read of 10 holding registers and
// a write single register, as in BenchmarkModbus. "serial" is one session;
// "parallel" is many sessions' Responses goroutines sharing the log.
func BenchmarkModbusRecord(b *testing.B) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	read := modbus.Record{RequestTime: now, ResponseTime: now.Add(800 * time.Microsecond), TransactionID: 7, Unit: 1,
		Function: modbus.FuncReadHoldingRegisters, Table: modbus.TableHoldingRegisters, Count: 10,
		ReadValues: []byte{0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7, 0, 8, 0, 9, 0, 10}, Verdict: modbus.VerdictAllowed, Rule: "bench"}
	write := modbus.Record{RequestTime: now, ResponseTime: now.Add(1200 * time.Microsecond), TransactionID: 8, Unit: 1,
		Function: modbus.FuncWriteSingleRegister, Table: modbus.TableHoldingRegisters, Address: 52, Count: 1,
		Written: []byte{0, 55}, Verdict: modbus.VerdictAllowed, Rule: "bench"}
	recs := [2]*modbus.Record{&read, &write}
	for _, mode := range []string{"serial", "parallel"} {
		b.Run(mode, func(b *testing.B) {
			w, err := audit.Open(b.TempDir(), key)
			if err != nil {
				b.Fatal(err)
			}
			defer w.Close()
			var next atomic.Int64
			record := func(i int64, dec *audit.Decoded) {
				if _, err := w.AppendBuffered(modbus.AuditPayload("0123456789abcdef", recs[i&1], dec)); err != nil {
					b.Error(err)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			if mode == "serial" {
				var dec audit.Decoded
				for i := range b.N {
					record(int64(i), &dec)
				}
			} else {
				b.SetParallelism(8) // 16 goroutines on 2 CPUs
				b.RunParallel(func(pb *testing.PB) {
					var dec audit.Decoded // one per session, as relayModbus keeps
					for pb.Next() {
						record(next.Add(1), &dec)
					}
				})
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1000, "us/record")
		})
	}
}
