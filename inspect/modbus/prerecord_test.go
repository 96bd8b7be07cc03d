package modbus_test

import (
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/otgate/otgate/inspect/modbus"
)

// TestRecordedBeforeForwardingSet: reads are recorded once, at their
// response; every other code (writes, state-changing diagnostics, file
// writes, CANopen, user-defined and unknown codes) before it is forwarded.
func TestRecordedBeforeForwardingSet(t *testing.T) {
	reads := map[modbus.Function]bool{1: true, 2: true, 3: true, 4: true, 7: true, 11: true, 12: true, 17: true, 20: true, 24: true}
	for f := 1; f < 128; f++ {
		fn := modbus.Function(f)
		switch fn {
		case modbus.FuncDiagnostics, modbus.FuncEncapsulatedInterface:
			continue
		}
		if got := modbus.RecordedBeforeForwarding(fn, 0); got == reads[fn] {
			t.Errorf("function %d (%s): recorded before forwarding %v, want %v", f, fn, got, !reads[fn])
		}
	}
	for sub := 0; sub < 0x20; sub++ {
		readOnly := sub == 0x00 || sub == 0x02 || (sub >= 0x0B && sub <= 0x12)
		if got := modbus.RecordedBeforeForwarding(modbus.FuncDiagnostics, uint16(sub)); got == readOnly {
			t.Errorf("diagnostics sub-function 0x%02x: recorded before forwarding %v, want %v", sub, got, !readOnly)
		}
	}
	if modbus.RecordedBeforeForwarding(modbus.FuncDiagnostics, 0xFFFF) != true {
		t.Error("an undefined diagnostics sub-function must be recorded before forwarding")
	}
	for mei := 0; mei < 256; mei++ {
		if got := modbus.RecordedBeforeForwarding(modbus.FuncEncapsulatedInterface, uint16(mei)); got == (mei == modbus.MEIReadDeviceIdentification) {
			t.Errorf("MEI type %d: recorded before forwarding %v", mei, got)
		}
	}
}

// TestWriteRecordedBeforeDeviceSeesIt: the record of a write reaches the
// sink before any byte of it reaches the device (a real TCP peer). The
// sink holds the record back; meanwhile the device receives nothing, and
// it receives the write once the sink returns. A read is forwarded with no
// record before it. A denied write gets no such record; a write monitor
// mode forwards ("would deny") does.
func TestWriteRecordedBeforeDeviceSeesIt(t *testing.T) {
	for _, mode := range []modbus.Mode{modbus.Enforce, modbus.Monitor} {
		name := map[modbus.Mode]string{modbus.Enforce: "enforce", modbus.Monitor: "monitor"}[mode]
		t.Run(name, func(t *testing.T) {
			devAddr, devConn := scriptedDevice(t)
			g := startGate(t, devAddr, mode)
			held, release := make(chan *modbus.Record, 4), make(chan struct{})
			g.rec.setHook(func(r *modbus.Record) error {
				if r.Outcome == modbus.OutcomeForwarded {
					held <- r.Clone()
					<-release
				}
				return nil
			})
			c := dial(t, g.addr)
			read := frame(1, 1, 3, 0, 0, 0, 2)
			c.Write(read)
			dev := <-devConn
			dev.SetDeadline(time.Now().Add(30 * time.Second))
			got := make([]byte, len(read))
			if _, err := io.ReadFull(dev, got); err != nil || string(got) != string(read) {
				t.Fatalf("device received % x, %v; want the read, with no record before it", got, err)
			}
			dev.Write(frame(1, 1, 3, 4, 0, 10, 0, 20))
			readFrame(t, c)

			write := frame(2, 1, 6, 0, 60, 0, 9) // outside the write ranges: monitor mode forwards it
			if mode == modbus.Enforce {
				write = frame(2, 1, 6, 0, 52, 0, 9)
			}
			c.Write(write)
			var r *modbus.Record
			select {
			case r = <-held:
			case <-time.After(20 * time.Second):
				t.Fatal("no record of the write before it was forwarded")
			}
			// The sink has the record and has not returned: nothing of the
			// write may have reached the device.
			dev.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			if n, err := dev.Read(make([]byte, 64)); n != 0 || !isTimeout(err) {
				t.Fatalf("device received %d bytes (err %v) while the write's record was still in the sink", n, err)
			}
			close(release)
			dev.SetDeadline(time.Now().Add(30 * time.Second))
			got = make([]byte, len(write))
			if _, err := io.ReadFull(dev, got); err != nil || string(got) != string(write) {
				t.Fatalf("device received % x, %v after the record; want the write", got, err)
			}
			wantVerdict, wantLine := modbus.VerdictAllowed, "unit 1 write holding 52 = 9 -> forwarded"
			if mode == modbus.Monitor {
				wantVerdict, wantLine = modbus.VerdictWouldDeny, "unit 1 write holding 60 = 9 -> forwarded [would deny, exception 02 illegal data address"
			}
			if r.Verdict != wantVerdict || r.TransactionID != 2 || !strings.Contains(r.String(), wantLine) {
				t.Fatalf("record before forwarding: %s (%+v), want %q", r, r, wantLine)
			}
			dev.Write(write) // the echo of a write single register
			readFrame(t, c)
			// Denied (enforce mode only): answered by the gate, no record before.
			if mode == modbus.Enforce {
				c.Write(frame(3, 1, 6, 0, 60, 0, 9))
				if f := readFrame(t, c); f[7] != 0x86 {
					t.Fatalf("denied write answered % x", f)
				}
			}
			c.Close()
			dev.Close()
			if err := g.end(t); err != nil {
				t.Fatalf("session end: %v", err)
			}
			// The final record of the write completes the one before it:
			// same transaction id, request time and request.
			var fwd, final []*modbus.Record
			for _, x := range g.rec.everything() {
				if x.TransactionID != 2 && x.TransactionID != 3 {
					continue
				}
				if x.Outcome == modbus.OutcomeForwarded {
					fwd = append(fwd, x)
				} else if x.TransactionID == 2 {
					final = append(final, x)
				}
			}
			if len(fwd) != 1 || len(final) != 1 {
				t.Fatalf("records of the writes: %d forwarded, %d final; want 1 and 1 (none for the denied one)\n%s", len(fwd), len(final), g.rec.text())
			}
			if !fwd[0].RequestTime.Equal(final[0].RequestTime) || final[0].Outcome != modbus.OutcomeOK || final[0].Verdict != wantVerdict {
				t.Fatalf("forwarded %s and final %s do not pair", fwd[0], final[0])
			}
		})
	}
}

// TestWriteNotForwardedWhenItsRecordFails: the sink fails to keep the
// record of a write: the device never sees the write, the client gets no
// answer, and the session ends with a *RecordError naming the write. The
// read pipelined before it in the same segment is forwarded (its record
// comes at its response).
func TestWriteNotForwardedWhenItsRecordFails(t *testing.T) {
	devAddr, devConn := scriptedDevice(t)
	g := startGate(t, devAddr, modbus.Enforce)
	logErr := errors.New("append payload: write audit-00000000.log: no space left on device")
	g.rec.setHook(func(r *modbus.Record) error {
		if r.Outcome == modbus.OutcomeForwarded {
			return logErr
		}
		return nil
	})
	c := dial(t, g.addr)
	read := frame(1, 1, 3, 0, 0, 0, 2)
	write := frame(2, 1, 16, 0, 50, 0, 2, 4, 0, 7, 0, 8)
	if _, err := c.Write(append(append([]byte(nil), read...), write...)); err != nil {
		t.Fatal(err)
	}
	dev := <-devConn
	dev.SetDeadline(time.Now().Add(30 * time.Second))
	got, err := io.ReadAll(dev)
	if err != nil || string(got) != string(read) {
		t.Fatalf("device received % x (%v), want the read alone: the write's record failed", got, err)
	}
	if n, err := c.Read(make([]byte, 64)); err != io.EOF {
		t.Fatalf("client read %d bytes, %v; want EOF (the session ended)", n, err)
	}
	err = g.end(t)
	var rec *modbus.RecordError
	if !errors.As(err, &rec) || !errors.Is(err, logErr) || !strings.Contains(err.Error(), "unit 1 write holding 50..51 = 7 8 (not forwarded)") {
		t.Fatalf("session ended with %v, want a RecordError naming the write", err)
	}
	for _, r := range g.rec.everything() {
		if r.TransactionID == 2 {
			t.Errorf("a record of the write was kept: %s", r)
		}
	}
}

func isTimeout(err error) bool {
	var ne interface{ Timeout() bool }
	return errors.As(err, &ne) && ne.Timeout()
}
