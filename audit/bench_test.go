package audit

import (
	"context"
	"testing"
)

func benchPayload() Payload {
	return Payload{SessionID: "bench", Direction: ToAsset, Bytes: 12, Raw: []byte{0, 1, 0, 0, 0, 6, 1, 3, 0, 0, 0, 10},
		Decoded: &Decoded{Protocol: "modbus", Unit: 1, Function: 3, Table: "holding", Start: 0, Count: 10, Outcome: "ok"}}
}

// BenchmarkAppendDurableSingle: one writer, every append fsynced.
func BenchmarkAppendDurableSingle(b *testing.B) {
	w := openLog(b, b.TempDir(), newKey(b))
	defer w.Close()
	p := benchPayload()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := w.Append(context.Background(), p); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "appends/s")
}

// BenchmarkAppendDurableGroup16: 16 concurrent writers sharing fsyncs.
func BenchmarkAppendDurableGroup16(b *testing.B) {
	w := openLog(b, b.TempDir(), newKey(b))
	defer w.Close()
	p := benchPayload()
	b.SetParallelism(16) // 16 x GOMAXPROCS goroutines; capped below
	sem := make(chan struct{}, 16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			sem <- struct{}{}
			_, err := w.Append(context.Background(), p)
			<-sem
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "appends/s")
}

// BenchmarkAppendBuffered: the payload path (write, no fsync wait).
func BenchmarkAppendBuffered(b *testing.B) {
	w := openLog(b, b.TempDir(), newKey(b), WithCheckpointEvery(1<<30))
	defer w.Close()
	p := benchPayload()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := w.AppendBuffered(p); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "appends/s")
}

// BenchmarkVerify: offline verification throughput (SetBytes: MB/s).
func BenchmarkVerify(b *testing.B) {
	dir := b.TempDir()
	key := newKey(b)
	w := openLog(b, dir, key, WithCheckpointEvery(1000), WithMaxFileSize(8<<20))
	p := benchPayload()
	for i := 0; i < 100000; i++ {
		if _, err := w.AppendBuffered(p); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	rep, err := Verify(dir, Trust{PublicKey: &key.PublicKey})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(rep.Bytes)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := Verify(dir, Trust{PublicKey: &key.PublicKey}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(rep.Records), "records/log")
}
