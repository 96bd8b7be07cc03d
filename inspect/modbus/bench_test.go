package modbus

import (
	"io"
	"testing"
	"time"
)

func BenchmarkParseRequest(b *testing.B) {
	frames := map[string][]byte{
		"read-holding-10":   adu(1, 1, []byte{3, 0, 0, 0, 10}),
		"write-multiple-10": adu(1, 1, append([]byte{16, 0, 50, 0, 10, 20}, make([]byte, 20)...)),
	}
	for name, f := range frames {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			var r Request
			for i := 0; i < b.N; i++ {
				if err := r.Parse(f); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkParseResponse(b *testing.B) {
	var req Request
	if err := req.Parse(adu(1, 1, []byte{3, 0, 0, 0, 10})); err != nil {
		b.Fatal(err)
	}
	f := adu(1, 1, append([]byte{3, 20}, make([]byte, 20)...))
	b.ReportAllocs()
	var r Response
	for i := 0; i < b.N; i++ {
		if err := r.Parse(f); err != nil {
			b.Fatal(err)
		}
		if err := r.Match(&req); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkJudge(b *testing.B) {
	p := demoPolicy(b)
	cases := map[string][]byte{
		"allow-read":        adu(1, 1, []byte{3, 0, 0, 0, 10}),
		"allow-write-limit": adu(1, 1, []byte{16, 0, 52, 0, 2, 4, 0, 5, 0, 6}),
		"deny-address":      adu(1, 1, []byte{6, 0, 60, 0, 1}),
	}
	for name, f := range cases {
		b.Run(name, func(b *testing.B) {
			var r Request
			if err := r.Parse(f); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				p.Judge(&r)
			}
		})
	}
}

func BenchmarkRecordAppendText(b *testing.B) {
	var req Request
	req.Parse(adu(1, 1, []byte{6, 0, 52, 0, 55}))
	var rec Record
	now := time.Now()
	rec.fillRequest(&req, now)
	rec.Verdict, rec.ResponseTime = VerdictAllowed, now.Add(time.Millisecond)
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		buf = rec.AppendText(buf[:0], "alice", "plc-7")
	}
}

// frameFeeder hands the session one request frame per Read and, before
// each, feeds the previous request's response to the response follower,
// so one goroutine drives whole transactions through the hot path.
type frameFeeder struct {
	s         *Session
	req, resp []byte
	n, i      int
}

func (f *frameFeeder) Read(p []byte) (int, error) {
	if f.i > 0 {
		f.s.clientMu.Lock()
		err := f.s.follow.feed(f.resp, f.s.onFrameFn)
		f.s.clientMu.Unlock()
		if err != nil {
			return 0, err
		}
	}
	if f.i == f.n {
		return 0, io.EOF
	}
	f.i++
	return copy(p, f.req), nil
}

// BenchmarkSessionTransaction: judge, track, forward, match, record: one
// transaction per op, without sockets.
func BenchmarkSessionTransaction(b *testing.B) {
	var records int
	s, err := NewSession(Config{Policy: demoPolicy(b), Sink: SinkFunc(func(*Record) error { records++; return nil })}, io.Discard, io.Discard)
	if err != nil {
		b.Fatal(err)
	}
	f := &frameFeeder{s: s, n: b.N,
		req:  adu(1, 1, []byte{3, 0, 0, 0, 10}),
		resp: adu(1, 1, append([]byte{3, 20}, make([]byte, 20)...))}
	b.ReportAllocs()
	b.ResetTimer()
	if err := s.Requests(f); err != nil {
		b.Fatal(err)
	}
	if records != b.N {
		b.Fatalf("%d records for %d transactions", records, b.N)
	}
}
