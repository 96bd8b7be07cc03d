package modbus_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/otgate/otgate/inspect/modbus"
)

func TestSessionPipelinedReads(t *testing.T) {
	g := startGate(t, startPlant(t), modbus.Enforce)
	c := dial(t, g.addr)
	// Five requests in one write: several transaction ids outstanding.
	var burst []byte
	for i := uint16(0); i < 5; i++ {
		burst = append(burst, frame(100+i, 1, 3, 0, byte(i), 0, 2)...)
	}
	burst = append(burst, frame(200, 1, 4, 0, 0, 0, 3)...)
	if _, err := c.Write(burst); err != nil {
		t.Fatal(err)
	}
	seen := map[uint16]bool{}
	for i := 0; i < 6; i++ {
		f := readFrame(t, c)
		seen[tidOf(f)] = true
		if f[7]&0x80 != 0 {
			t.Fatalf("exception for transaction %d: % x", tidOf(f), f)
		}
	}
	for _, tid := range []uint16{100, 101, 102, 103, 104, 200} {
		if !seen[tid] {
			t.Errorf("no response for transaction %d", tid)
		}
	}
	recs := g.rec.wait(t, 6)
	for _, r := range recs {
		if r.Verdict != modbus.VerdictAllowed || r.Outcome != modbus.OutcomeOK || r.Latency() <= 0 {
			t.Errorf("record %s: verdict %v outcome %v latency %v", r, r.Verdict, r.Outcome, r.Latency())
		}
		if r.TransactionID >= 100 && r.TransactionID < 105 {
			// holding 0..4 are valve 20, setpoints 800 200, alarm 950, 0
			want := []uint16{20, 800, 200, 950, 0, 0}[r.Address : r.Address+2]
			if len(r.ReadValues) != 4 || be(r.ReadValues, 0) != want[0] || be(r.ReadValues, 1) != want[1] {
				t.Errorf("record %s: values % x, want %v", r, r.ReadValues, want)
			}
		}
	}
	c.Close()
	if err := g.end(t); err != nil {
		t.Fatalf("normal close ended with %v", err)
	}
}

func be(b []byte, i int) uint16 { return uint16(b[2*i])<<8 | uint16(b[2*i+1]) }

func TestSessionDeniedWriteThenRead(t *testing.T) {
	dev := startPlant(t)
	g := startGate(t, dev, modbus.Enforce)
	c := dial(t, g.addr)
	// A denied write (holding 60, outside 50-55) and a read, pipelined.
	deny := frame(0x4d2, 1, 6, 0, 60, 0x12, 0x34)
	read := frame(0x4d3, 1, 3, 0, 60, 0, 1)
	if _, err := c.Write(append(deny, read...)); err != nil {
		t.Fatal(err)
	}
	got := map[uint16][]byte{}
	for i := 0; i < 2; i++ {
		f := readFrame(t, c)
		got[tidOf(f)] = f
	}
	if want := frame(0x4d2, 1, 0x86, 0x02); string(got[0x4d2]) != string(want) {
		t.Fatalf("denied write answered % x, want % x", got[0x4d2], want)
	}
	if want := frame(0x4d3, 1, 3, 2, 0, 0); string(got[0x4d3]) != string(want) {
		t.Fatalf("read after deny answered % x, want % x (register 60 unchanged: 0)", got[0x4d3], want)
	}
	// The write never reached the device: read holding 60 directly.
	d := dial(t, dev)
	d.Write(frame(1, 1, 3, 0, 60, 0, 1))
	if f := readFrame(t, d); string(f) != string(frame(1, 1, 3, 2, 0, 0)) {
		t.Fatalf("device holding 60 = % x, the denied write reached it", f)
	}
	// Value limit: 101 into register 52 -> exception 03; 55 passes.
	c.Write(frame(7, 1, 6, 0, 52, 0, 101))
	if f := readFrame(t, c); string(f) != string(frame(7, 1, 0x86, 0x03)) {
		t.Fatalf("over-limit write answered % x", f)
	}
	c.Write(frame(8, 1, 6, 0, 52, 0, 55))
	if f := readFrame(t, c); string(f) != string(frame(8, 1, 6, 0, 52, 0, 55)) {
		t.Fatalf("allowed write answered % x", f)
	}
	recs := g.rec.wait(t, 4)
	text := g.rec.text()
	for _, want := range []string{
		`unit 1 write holding 60 = 4660 -> denied, exception 02 illegal data address: modbus rules "alice-plc7": write holding 60 outside write ranges 50-55`,
		"unit 1 read holding 60 -> ok = 0 (",
		`write holding 52 = 101 -> denied, exception 03 illegal data value: modbus rules "alice-plc7": write holding 52 = 101 outside limit 0..100`,
		"unit 1 write holding 52 = 55 -> ok (",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("transcript lacks %q:\n%s", want, text)
		}
	}
	if recs[0].TransactionID != 0x4d2 || recs[0].Verdict != modbus.VerdictDenied || recs[0].Exception != modbus.ExIllegalDataAddress {
		t.Errorf("first record %+v", recs[0])
	}
}

func TestSessionMalformedFrameEndsSession(t *testing.T) {
	cases := []struct {
		name  string
		bad   []byte
		err   string
		isErr error
	}{
		{"byte count", frame(9, 1, 16, 0, 50, 0, 4, 7, 1, 2, 3, 4, 5, 6, 7, 8), "client->device frame at byte 12: function 16: byte count 7 but 8 value bytes follow", modbus.ErrMalformed},
		{"oversized", []byte{0, 9, 0, 0, 0x01, 0x2c, 1, 3}, "length 300 over 254", modbus.ErrOversized},
		{"protocol id", []byte{0, 9, 0, 5, 0, 6, 1, 3, 0, 0, 0, 1}, "protocol id 5, want 0", modbus.ErrMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			devAddr, devConn := scriptedDevice(t)
			g := startGate(t, devAddr, modbus.Enforce)
			c := dial(t, g.addr)
			good := frame(1, 1, 3, 0, 0, 0, 1)
			if _, err := c.Write(append(good, tc.bad...)); err != nil {
				t.Fatal(err)
			}
			dev := <-devConn
			dev.SetDeadline(time.Now().Add(30 * time.Second))
			got := make([]byte, len(good))
			if _, err := io.ReadFull(dev, got); err != nil || string(got) != string(good) {
				t.Fatalf("device received % x, %v", got, err)
			}
			dev.Write(frame(1, 1, 3, 2, 0, 42))
			// The gate half-closes the device side: nothing of the bad frame follows.
			if extra, err := io.ReadAll(dev); err != nil || len(extra) != 0 {
				t.Fatalf("device received % x after the good frame (err %v)", extra, err)
			}
			dev.Close()
			if f := readFrame(t, c); string(f) != string(frame(1, 1, 3, 2, 0, 42)) {
				t.Fatalf("good request before the bad one answered % x", f)
			}
			if n, err := c.Read(make([]byte, 1)); err != io.EOF {
				t.Fatalf("after a malformed frame the client read %d bytes, err %v; want EOF", n, err)
			}
			err := g.end(t)
			var end *modbus.EndError
			if !errors.As(err, &end) || !errors.Is(err, tc.isErr) || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("session ended with %v, want EndError containing %q", err, tc.err)
			}
			if recs := g.rec.wait(t, 1); recs[0].Outcome != modbus.OutcomeOK {
				t.Fatalf("good request record %s", recs[0])
			}
		})
	}
}

// TestSessionIllegalRequestAnswered: a request framed correctly whose
// values the specification forbids (126 registers, a byte count that is
// not the quantity's, a coil value other than on or off) is answered with
// the exception a device gives it (03, 02 for a span past the address
// space) and its transaction id; nothing of it reaches the device, the
// requests around it do, and the session goes on. A pipelined burst
// keeps its order.
func TestSessionIllegalRequestAnswered(t *testing.T) {
	devAddr, devConn := scriptedDevice(t)
	g := startGate(t, devAddr, modbus.Enforce)
	c := dial(t, g.addr)
	before, after := frame(1, 1, 3, 0, 0, 0, 1), frame(5, 1, 3, 0, 1, 0, 1)
	burst := slices.Concat(before,
		frame(2, 1, 3, 0, 0, 0, 126),          // 126 registers
		frame(3, 1, 16, 0, 50, 0, 2, 2, 0, 1), // byte count 2 for 2 registers
		frame(4, 1, 3, 0xff, 0xff, 0, 2),      // 65535 + 2
		frame(6, 1, 5, 0, 0, 0, 1),            // coil value 0x0001
		after)
	if _, err := c.Write(burst); err != nil {
		t.Fatal(err)
	}
	dev := <-devConn
	dev.SetDeadline(time.Now().Add(30 * time.Second))
	want := slices.Concat(before, after)
	got := make([]byte, len(want))
	if _, err := io.ReadFull(dev, got); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("device received % x, %v; want the two good requests only: % x", got, err, want)
	}
	dev.Write(slices.Concat(frame(1, 1, 3, 2, 0, 7), frame(5, 1, 3, 2, 0, 8)))
	answers := map[uint16][]byte{}
	for range 6 {
		f := readFrame(t, c)
		answers[tidOf(f)] = f
	}
	for tid, w := range map[uint16][]byte{
		1: frame(1, 1, 3, 2, 0, 7), 2: frame(2, 1, 0x83, 3), 3: frame(3, 1, 0x90, 3),
		4: frame(4, 1, 0x83, 2), 5: frame(5, 1, 3, 2, 0, 8), 6: frame(6, 1, 0x85, 3),
	} {
		if !bytes.Equal(answers[tid], w) {
			t.Errorf("transaction %d answered % x, want % x", tid, answers[tid], w)
		}
	}
	g.rec.wait(t, 6)
	text := g.rec.text()
	for _, want := range []string{
		"exception 03 illegal data value: illegal request: quantity 126 out of range 1..125",
		"exception 03 illegal data value: illegal request: byte count 2 does not match quantity 2 (want 4)",
		"exception 02 illegal data address: illegal request: address 65535 + quantity 2 passes the end of the address space (65536)",
		"unit 1 write coil 0 = 0x0001 -> denied, exception 03 illegal data value: illegal request: coil value 0x0001",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("transcript lacks %q:\n%s", want, text)
		}
	}
	dev.Close()
	c.Close()
	if err := g.end(t); err != nil {
		t.Fatalf("session ended with %v, want a normal end", err)
	}
}

func TestSessionDeviceMisbehaves(t *testing.T) {
	devAddr, devConn := scriptedDevice(t)
	g := startGate(t, devAddr, modbus.Enforce)
	c := dial(t, g.addr)
	reqs := append(frame(1, 1, 3, 0, 0, 0, 2), frame(2, 1, 3, 0, 5, 0, 1)...)
	reqs = append(reqs, frame(3, 1, 1, 0, 0, 0, 4)...)
	c.Write(reqs)
	dev := <-devConn
	dev.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.ReadFull(dev, make([]byte, len(reqs))); err != nil {
		t.Fatal(err)
	}
	// 1: wrong byte count for the quantity; 9: nobody asked; 2, 3: never answered.
	dev.Write(append(frame(1, 1, 3, 2, 0, 1), frame(9, 1, 0x83, 4)...))
	for i := 0; i < 2; i++ {
		readFrame(t, c) // forwarded unchanged: the gate only records
	}
	dev.Close()
	if err := g.end(t); err != nil {
		t.Fatalf("session end: %v", err)
	}
	text := g.rec.text()
	for _, want := range []string{
		"read holding 0..1 -> malformed response: function 3 response: byte count 2 for quantity 2 (want 4)",
		"unit 1 read-holding-registers transaction 9 -> unsolicited response, exception 04 server device failure",
		"read holding 5 -> no response",
		"read coil 0..3 -> no response",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("transcript lacks %q:\n%s", want, text)
		}
	}
}

func TestSessionMonitorMode(t *testing.T) {
	dev := startPlant(t)
	g := startGate(t, dev, modbus.Monitor)
	c := dial(t, g.addr)
	c.Write(frame(31, 1, 6, 0, 60, 0, 9))
	if f := readFrame(t, c); string(f) != string(frame(31, 1, 6, 0, 60, 0, 9)) {
		t.Fatalf("monitor mode: write answered % x, want the device's echo", f)
	}
	c.Write(frame(32, 1, 3, 0, 60, 0, 1))
	if f := readFrame(t, c); string(f) != string(frame(32, 1, 3, 2, 0, 9)) {
		t.Fatalf("monitor mode: register 60 reads % x, want 9", f)
	}
	recs := g.rec.wait(t, 2)
	r := recs[0]
	if r.Verdict != modbus.VerdictWouldDeny || r.Outcome != modbus.OutcomeOK || r.DenyException != modbus.ExIllegalDataAddress {
		t.Fatalf("monitor record %s: %+v", r, r)
	}
	if !strings.Contains(r.String(), "write holding 60 = 9 -> ok (") || !strings.Contains(r.String(), "[would deny, exception 02 illegal data address: modbus rules \"alice-plc7\": write holding 60 outside write ranges 50-55]") {
		t.Fatalf("monitor transcript: %s", r)
	}
	if recs[1].Verdict != modbus.VerdictAllowed {
		t.Fatalf("allowed read recorded as %v", recs[1].Verdict)
	}
}

// scriptedDevice accepts one connection and hands it to the test.
func scriptedDevice(t *testing.T) (string, <-chan net.Conn) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		l.Close()
		if err == nil {
			t.Cleanup(func() { c.Close() })
			ch <- c
		}
	}()
	return l.Addr().String(), ch
}

func TestSessionCutThroughAndFrameBoundary(t *testing.T) {
	devAddr, devConn := scriptedDevice(t)
	// The clock tells the test when the gate has judged a request.
	clockCalls := make(chan struct{}, 100)
	now := func() time.Time { clockCalls <- struct{}{}; return time.Now() }
	g := startGateWith(t, devAddr, modbus.Enforce, gateOptions{now: now})
	c := dial(t, g.addr)
	req := frame(1, 1, 3, 0, 0, 0, 2)
	c.Write(req)
	dev := <-devConn
	dev.SetDeadline(time.Now().Add(30 * time.Second))
	got := make([]byte, len(req))
	if _, err := io.ReadFull(dev, got); err != nil || string(got) != string(req) {
		t.Fatalf("device received % x, %v", got, err)
	}
	resp := frame(1, 1, 3, 4, 0, 10, 0, 20)
	// Cut-through: the first 5 bytes reach the client before the rest exists.
	dev.Write(resp[:5])
	head := make([]byte, 5)
	if _, err := io.ReadFull(c, head); err != nil || string(head) != string(resp[:5]) {
		t.Fatalf("client got % x, %v before the frame was complete", head, err)
	}
	// A denied request now: its exception must wait for the frame boundary.
	c.Write(frame(2, 1, 6, 0, 99, 0, 1))
	// Clock calls so far: judging request 1, judging request 2 (the
	// half-forwarded response has not completed, so it has not read the
	// clock). After the second, the exception is waiting for the boundary.
	for i := 0; i < 2; i++ {
		select {
		case <-clockCalls:
		case <-time.After(20 * time.Second):
			t.Fatal("gate did not judge the requests")
		}
	}
	dev.Write(resp[5:])
	rest := make([]byte, len(resp)-5)
	if _, err := io.ReadFull(c, rest); err != nil || string(rest) != string(resp[5:]) {
		t.Fatalf("rest of the response % x, %v: the exception was interleaved into it", rest, err)
	}
	if f := readFrame(t, c); string(f) != string(frame(2, 1, 0x86, 2)) {
		t.Fatalf("exception after the frame % x", f)
	}
	recs := g.rec.wait(t, 2)
	var read *modbus.Record
	for _, r := range recs {
		if r.TransactionID == 1 {
			read = r
		}
	}
	if read == nil || read.Outcome != modbus.OutcomeOK || !strings.Contains(read.String(), "unit 1 read holding 0..1 -> ok = 10 20 (") {
		t.Fatalf("read record: %v", read)
	}
	// The device closes: the session ends normally.
	dev.Close()
	if err := g.end(t); err != nil {
		t.Fatalf("device close ended the session with %v", err)
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("connection reset") }

// TestDeniedRecordedWhenAnswerFails: a denied request is recorded even
// when its exception cannot reach the client, because the client's side
// fails or the device has already closed (the session is ending); nothing
// of it reaches the device.
func TestDeniedRecordedWhenAnswerFails(t *testing.T) {
	deny := frame(0x77, 1, 6, 0, 60, 0, 1) // holding 60 is outside write 50-55
	for _, tc := range []struct {
		name     string
		toClient io.Writer
		devGone  bool
	}{
		{"client write fails", failingWriter{}, false},
		{"device stream ended", io.Discard, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := newRecorder()
			var toDevice strings.Builder
			s, err := modbus.NewSession(modbus.Config{Policy: policy(t), Sink: rec}, tc.toClient, &toDevice)
			if err != nil {
				t.Fatal(err)
			}
			if tc.devGone {
				if err := s.Responses(strings.NewReader("")); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Requests(strings.NewReader(string(deny))); err == nil || !strings.Contains(err.Error(), "write exception to client") {
				t.Fatalf("Requests = %v, want the failed exception write", err)
			}
			if toDevice.Len() != 0 {
				t.Fatalf("device received % x", toDevice.String())
			}
			all := rec.everything()
			if len(all) != 1 {
				t.Fatalf("%d records, want the denial: %v", len(all), all)
			}
			r := all[0]
			if r.TransactionID != 0x77 || r.Verdict != modbus.VerdictDenied || r.DenyException != modbus.ExIllegalDataAddress ||
				r.Outcome != modbus.OutcomeNoResponse || !strings.Contains(r.String(), "write holding 60 = 1 -> denied, exception 02 illegal data address") {
				t.Fatalf("record %s: %+v", r, r)
			}
		})
	}
}

// TestSessionDuplicateTransactionIDs: a client may reuse a transaction id
// while a request with it is outstanding; the device answers both, in
// order. Each response is matched to its own request (the oldest with
// that id), so the records say what each request did.
func TestSessionDuplicateTransactionIDs(t *testing.T) {
	devAddr, devConn := scriptedDevice(t)
	g := startGate(t, devAddr, modbus.Enforce)
	c := dial(t, g.addr)
	read := frame(3, 1, 3, 0, 1, 0, 1)
	write := frame(3, 1, 6, 0, 50, 0, 9)
	c.Write(append(read, write...))
	dev := <-devConn
	dev.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.ReadFull(dev, make([]byte, len(read)+len(write))); err != nil {
		t.Fatal(err)
	}
	dev.Write(append(frame(3, 1, 3, 2, 0, 42), frame(3, 1, 6, 0, 50, 0, 9)...))
	for i := 0; i < 2; i++ {
		readFrame(t, c)
	}
	recs := g.rec.wait(t, 2)
	c.Close()
	dev.Close()
	if err := g.end(t); err != nil {
		t.Fatalf("session end: %v", err)
	}
	text := g.rec.text()
	for _, want := range []string{"unit 1 read holding 1 -> ok = 42 (", "unit 1 write holding 50 = 9 -> ok ("} {
		if !strings.Contains(text, want) {
			t.Errorf("transcript lacks %q:\n%s", want, text)
		}
	}
	if len(g.rec.everything()) != 3 || len(recs) != 2 {
		t.Errorf("want the write's forwarded record and two transactions:\n%s", text)
	}
}

// TestSessionAdmitEndsAtDeadline: a pipelined burst read in one piece
// straddles the end of the session's window. The requests judged before
// the deadline are forwarded; the first judged at or after it is not: it
// is answered with exception 0A, recorded denied with the reason, and the
// session ends with Admit's error. Nothing after it is judged.
func TestSessionAdmitEndsAtDeadline(t *testing.T) {
	t0 := time.Date(2026, 11, 23, 16, 0, 0, 0, time.UTC)
	deadline := t0.Add(1500 * time.Millisecond)
	tick := 0
	now := func() time.Time { tick++; return t0.Add(time.Duration(tick-1) * time.Second) }
	errPast := errors.New(`rule "alice-plc7" allowed it until 16:00:01.5`)
	rec := newRecorder()
	var toDevice, toClient strings.Builder
	s, err := modbus.NewSession(modbus.Config{Policy: policy(t), Sink: rec, Now: now,
		Admit: func(at time.Time) error {
			if !at.Before(deadline) {
				return errPast
			}
			return nil
		}}, &toClient, &toDevice)
	if err != nil {
		t.Fatal(err)
	}
	read := frame(1, 1, 3, 0, 0, 0, 1)
	write := frame(2, 1, 6, 0, 50, 0, 1)
	late := frame(3, 1, 6, 0, 51, 0, 2)
	after := frame(4, 1, 3, 0, 0, 0, 1)
	burst := string(read) + string(write) + string(late) + string(after)
	if err := s.Requests(strings.NewReader(burst)); !errors.Is(err, errPast) {
		t.Fatalf("Requests = %v, want Admit's error", err)
	}
	if want := string(read) + string(write); toDevice.String() != want {
		t.Fatalf("device received % x, want the two requests judged before the deadline % x", toDevice.String(), want)
	}
	if want := string(frame(3, 1, 0x86, 0x0a)); toClient.String() != want {
		t.Fatalf("client received % x, want % x", toClient.String(), want)
	}
	var denied []*modbus.Record
	for _, r := range rec.everything() {
		if r.Verdict == modbus.VerdictDenied {
			denied = append(denied, r)
		}
	}
	if len(denied) != 1 || denied[0].TransactionID != 3 || denied[0].Exception != modbus.ExGatewayPathUnavailable ||
		!strings.Contains(denied[0].String(), `write holding 51 = 2 -> denied, exception 0a gateway path unavailable: rule "alice-plc7" allowed it until`) {
		t.Fatalf("denied records %v", denied)
	}
	if s.Outstanding() != 2 {
		t.Fatalf("%d outstanding, want the read and the write forwarded", s.Outstanding())
	}
}

// TestSessionDeviceBadHeaderWhileExceptionWaits: a denied request's
// exception waits for the device's half-sent response to complete; the
// rest of it is a bad MBAP header, so the response side ends. The waiting
// exception must give up and the session end with the device's EndError,
// not hang with the relay waiting for the request side forever.
func TestSessionDeviceBadHeaderWhileExceptionWaits(t *testing.T) {
	devAddr, devConn := scriptedDevice(t)
	clockCalls := make(chan struct{}, 100)
	now := func() time.Time { clockCalls <- struct{}{}; return time.Now() }
	g := startGateWith(t, devAddr, modbus.Enforce, gateOptions{now: now})
	c := dial(t, g.addr)
	req := frame(1, 1, 3, 0, 0, 0, 1)
	c.Write(req)
	dev := <-devConn
	dev.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.ReadFull(dev, make([]byte, len(req))); err != nil {
		t.Fatal(err)
	}
	<-clockCalls               // request 1 judged
	dev.Write([]byte{0, 1, 0}) // a response begins
	if _, err := io.ReadFull(c, make([]byte, 3)); err != nil {
		t.Fatal(err)
	}
	c.Write(frame(2, 1, 6, 0, 99, 0, 1)) // denied: its exception waits for the frame boundary
	select {
	case <-clockCalls:
	case <-time.After(20 * time.Second):
		t.Fatal("gate did not judge the denied request")
	}
	dev.Write([]byte{5, 0, 5, 1}) // protocol id 5: the stream cannot be followed
	done := make(chan error, 1)
	go func() {
		select {
		case err := <-g.ends:
			done <- err
		case <-time.After(5 * time.Second):
			done <- errors.New("session still running 5 s after the device's bad header")
		}
	}()
	err := <-done
	var end *modbus.EndError
	if !errors.As(err, &end) || end.Direction != "device->client" || !strings.Contains(err.Error(), "protocol id 5") {
		t.Fatalf("session ended with %v, want the device's bad header", err)
	}
	recs := g.rec.wait(t, 2)
	var denied bool
	for _, r := range recs {
		denied = denied || (r.TransactionID == 2 && r.Verdict == modbus.VerdictDenied)
	}
	if !denied {
		t.Errorf("the denied request has no record:\n%s", g.rec.text())
	}
}
