package modbus

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

func TestPendingEvictionAndDuplicates(t *testing.T) {
	var recs []string
	sink := SinkFunc(func(r *Record) error { recs = append(recs, r.String()[13:]); return nil })
	var toDevice bytes.Buffer
	s, err := NewSession(Config{Policy: demoPolicy(t), Sink: sink, MaxOutstanding: 2}, &bytes.Buffer{}, &toDevice)
	if err != nil {
		t.Fatal(err)
	}
	var in []byte
	in = append(in, adu(1, 1, []byte{3, 0, 1, 0, 1})...)
	in = append(in, adu(2, 1, []byte{3, 0, 2, 0, 1})...)
	in = append(in, adu(3, 1, []byte{3, 0, 3, 0, 1})...)            // table full: 1 is evicted
	in = append(in, adu(3, 1, []byte{16, 0, 50, 0, 1, 2, 0, 9})...) // same id as an outstanding one: kept too; 2 is evicted
	if err := s.Requests(bytes.NewReader(in)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(toDevice.Bytes(), in) {
		t.Fatalf("device got % x, want all four requests", toDevice.Bytes())
	}
	// The device answers the two requests of id 3 in order; the write to
	// 50 must still decode from the table's own copy.
	if err := s.follow.feed(append(adu(3, 1, []byte{3, 2, 0, 7}), adu(3, 1, []byte{16, 0, 50, 0, 1})...), s.onFrameFn); err != nil {
		t.Fatal(err)
	}
	s.Finish()
	want := []string{
		"unit 1 read holding 1 -> no response",
		"unit 1 read holding 2 -> no response",     // evicted when the write is tracked
		"unit 1 write holding 50 = 9 -> forwarded", // then recorded, then forwarded
		"unit 1 read holding 3 -> ok = 7",
		"unit 1 write holding 50 = 9 -> ok",
	}
	if len(recs) != len(want) {
		t.Fatalf("records:\n%s", strings.Join(recs, "\n"))
	}
	for i := range want {
		if !strings.HasPrefix(recs[i], want[i]) {
			t.Errorf("record %d = %q, want %q", i, recs[i], want[i])
		}
	}
}

func TestNewSessionRefusesMissingParts(t *testing.T) {
	if _, err := NewSession(Config{Sink: SinkFunc(func(*Record) error { return nil })}, nil, nil); err == nil || !strings.Contains(err.Error(), "no policy") {
		t.Errorf("no policy: %v", err)
	}
	if _, err := NewSession(Config{Policy: demoPolicy(t)}, nil, nil); err == nil || !strings.Contains(err.Error(), "no record sink") {
		t.Errorf("no sink: %v", err)
	}
}

func TestRequestsTruncatedStream(t *testing.T) {
	s, err := NewSession(Config{Policy: demoPolicy(t), Sink: SinkFunc(func(*Record) error { return nil })}, &bytes.Buffer{}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	f := adu(1, 1, []byte{3, 0, 1, 0, 1})
	err = s.Requests(bytes.NewReader(append(f, f[:9]...)))
	if err == nil || !strings.Contains(err.Error(), "client->device frame at byte 12: malformed Modbus frame: stream ended inside a frame (9 bytes of it received)") {
		t.Fatalf("truncated stream: %v", err)
	}
}

// TestPendingTableIndex: the compact index (used, tids, n) agrees with
// the slots through puts, evictions, duplicate ids and releases.
func TestPendingTableIndex(t *testing.T) {
	p := newPendingTable(3)
	var evicted []uint16
	evict := func(o *outstanding) { evicted = append(evicted, o.req.Header.TransactionID) }
	put := func(tid uint16) {
		var r Request
		if err := r.Parse(adu(tid, 1, []byte{3, 0, byte(tid), 0, 1})); err != nil {
			t.Fatal(err)
		}
		p.put(&r, time.Time{}, VerdictAllowed, Decision{}, evict)
	}
	for _, tid := range []uint16{10, 11, 12} {
		put(tid)
	}
	if p.count() != 3 || len(evicted) != 0 {
		t.Fatalf("3 puts in 3 slots: count %d, evicted %v", p.count(), evicted)
	}
	put(13) // full: 10, the oldest, goes
	put(12) // same id as an outstanding one: stored as well; full, so 11 goes
	if p.count() != 3 || len(evicted) != 2 || evicted[0] != 10 || evicted[1] != 11 {
		t.Fatalf("after a full-table put and a duplicate: count %d, evicted %v, want 3 and [10 11]", p.count(), evicted)
	}
	if p.take(10, 1) != nil || p.take(11, 1) != nil {
		t.Fatal("evicted transactions 10 and 11 are still found")
	}
	// Two requests with id 12: take finds the older first.
	o := p.take(12, 1)
	if o == nil || o.seq != 3 {
		t.Fatalf("take(12) = %+v, want the first request with id 12", o)
	}
	p.release(o)
	if o = p.take(12, 1); o == nil || o.seq != 5 {
		t.Fatalf("second take(12) = %+v, want the second request with id 12", o)
	}
	put(11)
	o = p.take(11, 1)
	if o == nil || o.req.Header.TransactionID != 11 || o.req.Address != 11 {
		t.Fatalf("take(11) = %+v", o)
	}
	p.release(o)
	p.release(o) // releasing twice changes nothing
	if p.count() != 2 || p.take(11, 1) != nil {
		t.Fatalf("after releasing 11: count %d, take(11) %v", p.count(), p.take(11, 1))
	}
	var order []uint16
	for o := p.oldest(); o != nil; o = p.oldest() {
		order = append(order, o.req.Header.TransactionID)
		p.release(o)
	}
	if len(order) != 2 || order[0] != 13 || order[1] != 12 || p.count() != 0 {
		t.Fatalf("oldest first: %v (count %d), want [13 12] and 0", order, p.count())
	}
}

// TestForwardNotRecordedWhenEvictionRecordFails: the table is full, and
// the record of the request it evicts fails. The new request is not
// forwarded (the session ends on the failed record), so no record may say
// it was: no "forwarded" record of it, and nothing of it at Finish.
func TestForwardNotRecordedWhenEvictionRecordFails(t *testing.T) {
	var recs []string
	sink := SinkFunc(func(r *Record) error {
		if r.Outcome == OutcomeNoResponse {
			return errors.New("disk full")
		}
		recs = append(recs, r.String()[13:])
		return nil
	})
	var toDevice bytes.Buffer
	s, err := NewSession(Config{Policy: demoPolicy(t), Sink: sink, MaxOutstanding: 1}, &bytes.Buffer{}, &toDevice)
	if err != nil {
		t.Fatal(err)
	}
	read := adu(1, 1, []byte{3, 0, 1, 0, 1})
	write := adu(2, 1, []byte{6, 0, 50, 0, 9})
	var rerr *RecordError
	if err := s.Requests(bytes.NewReader(append(read, write...))); !errors.As(err, &rerr) || !strings.Contains(err.Error(), "read holding 1 -> no response") {
		t.Fatalf("Requests = %v, want the failed record of the evicted read", err)
	}
	if !bytes.Equal(toDevice.Bytes(), read) {
		t.Fatalf("device got % x, want the read alone", toDevice.Bytes())
	}
	s.Finish()
	if len(recs) != 0 {
		t.Fatalf("records of a request that was not forwarded:\n%s", strings.Join(recs, "\n"))
	}
}

// TestResponseRecordOwnsItsRequestFields: the record of a response is
// handed to the sink after the request's pending slot is freed, and the
// client's next request may land in that slot while the sink still
// encodes the record. What the record took from the request's frame (the
// file records a read file record asks for, the values a write sends)
// must be its own copy.
func TestResponseRecordOwnsItsRequestFields(t *testing.T) {
	r := Rules{Units: []int{1}, Functions: []string{"programming", "read-write"},
		HoldingRegisters: TableRanges{Read: []Range{{0, 99}}, Write: []Range{{0, 99}}}}
	p, err := r.Compile()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name      string
		req, resp []byte // PDUs of transaction 1
		field     func(*Record) []byte
	}{
		{"read file record refs", []byte{0x14, 7, 6, 0, 1, 0, 0, 0, 1}, []byte{0x14, 4, 3, 6, 0x12, 0x34}, func(r *Record) []byte { return r.Refs }},
		{"written values", []byte{0x10, 0, 5, 0, 2, 4, 0xaa, 0xbb, 0xcc, 0xdd}, []byte{0x10, 0, 5, 0, 2}, func(r *Record) []byte { return r.Written }},
	} {
		t.Run(c.name, func(t *testing.T) {
			inSink, proceed := make(chan []byte), make(chan struct{})
			after := make(chan []byte, 1)
			fn := Function(c.req[0])
			sink := SinkFunc(func(r *Record) error {
				if r.Function == fn && r.Outcome == OutcomeOK {
					inSink <- append([]byte(nil), c.field(r)...)
					<-proceed
					after <- append([]byte(nil), c.field(r)...)
				}
				return nil
			})
			dev, cli := &chanWriter{make(chan []byte, 10)}, &chanWriter{make(chan []byte, 10)}
			s, err := NewSession(Config{Policy: p, Sink: sink}, cli, dev)
			if err != nil {
				t.Fatal(err)
			}
			cr, cw := io.Pipe()
			dr, dw := io.Pipe()
			defer cw.Close()
			defer dw.Close()
			go s.Requests(cr)
			go s.Responses(dr)
			cw.Write(adu(1, 1, c.req))
			<-dev.ch
			go dw.Write(adu(1, 1, c.resp))
			before := <-inSink
			// The next request takes the freed slot: its frame overwrites
			// the bytes the record took from the first. (A read: a write
			// is recorded before it is forwarded, and would wait for the
			// sink this test holds.)
			cw.Write(adu(2, 1, []byte{0x14, 14, 6, 0, 2, 0, 9, 0, 1, 6, 0, 3, 0, 8, 0, 1}))
			<-dev.ch
			close(proceed)
			if got := <-after; len(before) == 0 || !bytes.Equal(before, got) {
				t.Fatalf("the record's field changed under the sink: % x -> % x", before, got)
			}
		})
	}
}

type chanWriter struct{ ch chan []byte }

func (w *chanWriter) Write(b []byte) (int, error) {
	w.ch <- append([]byte(nil), b...)
	return len(b), nil
}

// TestSharedTransactionIDAcrossUnits: a client of a TCP-to-serial gateway
// that numbers transactions per device has requests to two units out
// with one transaction id, and the gateway answers the second device
// first (each serial line at its own pace). Each response must be
// recorded with the request to its unit: matched by the transaction id
// alone, both were recorded malformed ("unit 2 answers a request to unit
// 1") and the values each device returned were lost from the log.
func TestSharedTransactionIDAcrossUnits(t *testing.T) {
	var recs []string
	sink := SinkFunc(func(r *Record) error { recs = append(recs, r.String()[13:]); return nil })
	s, err := NewSession(Config{Policy: gatewayPolicy(t), Sink: sink}, &bytes.Buffer{}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	in := append(adu(7, 1, []byte{3, 0, 0, 0, 1}), adu(7, 2, []byte{4, 0, 0, 0, 1})...)
	in = append(in, adu(8, 1, []byte{3, 0, 1, 0, 1})...)
	if err := s.Requests(bytes.NewReader(in)); err != nil {
		t.Fatal(err)
	}
	// 8: answered by a unit it was not sent to, still recorded against it.
	out := append(adu(7, 2, []byte{4, 2, 0, 5}), adu(7, 1, []byte{3, 2, 0, 42})...)
	out = append(out, adu(8, 3, []byte{3, 2, 0, 1})...)
	if err := s.follow.feed(out, s.onFrameFn); err != nil {
		t.Fatal(err)
	}
	if err := s.Finish(); err != nil {
		t.Fatal(err)
	}
	want := []string{"unit 2 read input 0 -> ok = 5", "unit 1 read holding 0 -> ok = 42",
		"unit 1 read holding 1 -> malformed response: function 3 response: unit 3 answers a request to unit 1"}
	if len(recs) != len(want) {
		t.Fatalf("records:\n%s", strings.Join(recs, "\n"))
	}
	for i := range want {
		if !strings.HasPrefix(recs[i], want[i]) {
			t.Errorf("record %d = %q, want %q", i, recs[i], want[i])
		}
	}
}
