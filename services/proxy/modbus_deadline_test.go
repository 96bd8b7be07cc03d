package proxy

import (
	"encoding/hex"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/otgate/otgate/audit"
	"github.com/otgate/otgate/inspect/modbus"
)

// TestModbusRequestAfterDeadlineNotForwarded: the gate's clock passes the
// end of the grant's window without the session's timer firing (it runs
// on the monotonic clock: a suspend, or the clock set forward). A write
// judged after the deadline never reaches the device (a real TCP peer in
// the plant namespace): the client gets exception 0A with its transaction
// id, the session ends with the deadline as its reason, and the denial is
// recorded.
func TestModbusRequestAfterDeadlineNotForwarded(t *testing.T) {
	l := newLab(t)
	devLn := l.listenPlant(t, 502)
	received := oneReadDevice(devLn)
	var offset atomic.Int64
	g := newGate(t, l, func(c *Config) {
		c.Now = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	})
	rules := modbus.Rules{Name: "alice-plc", Units: []int{1}, Functions: []string{"read-write"},
		HoldingRegisters: modbus.TableRanges{Read: []modbus.Range{{First: 0, Last: 9}}, Write: []modbus.Range{{First: 1, Last: 2}}}}
	pol, err := rules.Compile()
	if err != nil {
		t.Fatal(err)
	}
	g.setGrants(grant{rule: "alice-plc", user: "alice", asset: "plc-1", protocol: "modbus", modbus: pol, until: time.Now().Add(30 * time.Minute).Truncate(time.Second)})
	alice := g.mustLogin("alice")
	c, r, err := tunnel(t, alice, "plc-1", "modbus")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := modbusExchange(t, c, "000100000006010300010001"); got != "00010000000501030200"+"07" {
		t.Fatalf("read holding 1 = %s", got)
	}
	// The wall clock is now past the window; the session's timer has not
	// fired. write holding 2 = 5: allowed by the rules, but too late.
	offset.Store(int64(2 * time.Hour))
	if got := modbusExchange(t, c, "000200000006010600020005"); got != "00020000000301860a" {
		t.Fatalf("write after the deadline answered %s, want exception 0a (00020000000301860a)", got)
	}
	waitClosed(t, c, 30*time.Second)
	select {
	case got := <-received:
		if hex.EncodeToString(got) != "000100000006010300010001" {
			t.Fatalf("the device received %x; want the read alone (the write came after the deadline)", got)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the gate did not close the device connection")
	}
	end := g.waitEnd(r.Session, EndUntil)
	if !strings.Contains(end.Reason, `rule "alice-plc" allowed it until`) {
		t.Errorf("end reason %q: want the rule's window", end.Reason)
	}
	rec := g.waitRecord("decoded record of transaction 2", func(b audit.Body) bool {
		p, ok := b.(audit.Payload)
		return ok && p.Decoded != nil && p.Decoded.Transaction == 2
	}).(audit.Payload)
	if d := rec.Decoded; d.Verdict != "denied" || d.Exception != 0x0a || d.Function != 6 || d.Start != 2 ||
		!strings.Contains(d.Reason, `rule "alice-plc" allowed it until`) {
		t.Errorf("record of the late write %+v: want it denied with exception 0a and the deadline", *d)
	}
}

// TestAdmitModbus: the inspector's Admit refuses every request judged
// once the session has been ended (the connections are being closed:
// nothing judged after that may still be written to the asset), and past
// the deadline; it admits before.
func TestAdmitModbus(t *testing.T) {
	now := time.Date(2026, 11, 23, 16, 0, 0, 0, time.UTC)
	s := &session{rule: "r", ended: make(chan struct{})}
	s.setUntil(now.Add(time.Hour), now.Add(time.Hour), now)
	defer s.stopTimer()
	if err := s.admitModbus(now); err != nil {
		t.Fatalf("before the deadline: %v", err)
	}
	if err := s.admitModbus(now.Add(time.Hour)); err == nil || !strings.Contains(err.Error(), `rule "r" allowed it until`) {
		t.Fatalf("at the deadline: %v", err)
	}
	s.end(EndRevoked)
	if err := s.admitModbus(now); err == nil || err.Error() != EndRevoked {
		t.Fatalf("after the session ended: %v, want %q", err, EndRevoked)
	}
}
