package proxy

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/otgate/otgate/audit"
	"github.com/otgate/otgate/inspect/modbus"
	"github.com/otgate/otgate/plant"
)

// TestModbusSessionHandover: a Modbus session opened under "day" runs on
// when "late", with the same rules, takes over at day's end: the handover
// is recorded and the inspector judges, and records, under late from
// then on; at late's end "night", with other rules (register 5
// writable), takes it over too, its connection up, and judges the next
// request by them; the session ends at night's end, and its deadline said
// so from the start.
func TestModbusSessionHandover(t *testing.T) {
	l := newLab(t)
	srv := &plant.Server{Tank: plant.NewTank(nil), Unit: 1}
	go srv.Serve(l.listenPlant(t, 502))
	g := newGate(t, l)
	rules := func(name string, lastWritable uint16) *modbus.Policy {
		return holdingRules(t, name, 9, 1, lastWritable)
	}
	edge1 := time.Now().Add(5 * time.Second).Truncate(time.Second)
	edge2 := edge1.Add(3 * time.Second)
	edge3 := edge2.Add(3 * time.Second)
	g.setGrants(
		grant{rule: "day", user: "alice", asset: "plc-1", protocol: "modbus", until: edge1, modbus: rules("day", 2)},
		grant{rule: "late", user: "alice", asset: "plc-1", protocol: "modbus", from: edge1, until: edge2, modbus: rules("late", 2)},
		grant{rule: "night", user: "alice", asset: "plc-1", protocol: "modbus", from: edge2, until: edge3, modbus: rules("night", 5)},
	)
	s := g.mustLogin("alice")
	c, r, err := tunnel(t, s, "plc-1", "modbus")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if r.Rule != "day" || r.Until != edge3.Unix() {
		t.Fatalf("reply %+v: want rule day, until %v (late, then night, carry the session on)", r, edge3)
	}
	// Write register 5: writable under night only.
	deniedWrite := func(tid byte) {
		t.Helper()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write([]byte{0, tid, 0, 0, 0, 6, 1, 6, 0, 5, 0, 1}); err != nil {
			t.Fatal(err)
		}
		rsp := make([]byte, 9)
		if _, err := io.ReadFull(c, rsp); err != nil {
			t.Fatal(err)
		}
		if rsp[1] != tid || rsp[7] != 0x86 || rsp[8] != 0x02 {
			t.Fatalf("write of register 5: % x, want exception 02 for transaction %d", rsp, tid)
		}
	}
	deniedWrite(1)
	time.Sleep(time.Until(edge1.Add(300 * time.Millisecond)))
	ev := g.waitEvent(EventSessionHandover, "alice", `grant "day" ended at `+edge1.Format(time.RFC3339)+`; grant "late" takes the session over`)
	if ev.SessionID != r.Session || ev.Rule != "late" {
		t.Errorf("handover event %+v: want session %s, rule late", ev, r.Session)
	}
	deniedWrite(2)
	var reasons []string
	for _, e := range g.entries() {
		if p, ok := e.Body.(audit.Payload); ok && p.SessionID == r.Session && p.Decoded != nil && p.Decoded.Verdict == "denied" {
			reasons = append(reasons, p.Decoded.Reason)
		}
	}
	if len(reasons) != 2 || !strings.Contains(reasons[0], `modbus rules "day"`) || !strings.Contains(reasons[1], `modbus rules "late"`) {
		t.Errorf("denied writes recorded with %q: want the first under day's rules, the second under late's", reasons)
	}
	// night's rules differ, and take the session over at late's end.
	time.Sleep(time.Until(edge2.Add(300 * time.Millisecond)))
	ev = g.waitEvent(EventSessionHandover, "alice", `grant "late" ended at `+edge2.Format(time.RFC3339)+`; grant "night" takes the session over`)
	if ev.SessionID != r.Session || !strings.Contains(ev.Reason, `; other Modbus rules (grant "night") judge its requests from now on`) {
		t.Errorf("handover event %+v: want session %s, the rules' change named", ev, r.Session)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	write := []byte{0, 3, 0, 0, 0, 6, 1, 6, 0, 5, 0, 1}
	if _, err := c.Write(write); err != nil {
		t.Fatal(err)
	}
	rsp := make([]byte, 12)
	if _, err := io.ReadFull(c, rsp); err != nil || string(rsp) != string(write) {
		t.Fatalf("write of register 5 under night: % x, %v; want the device's echo", rsp, err)
	}
	waitClosed(t, c, 20*time.Second)
	g.waitEnd(r.Session, EndUntil+`: rule "night" allowed it until `+edge3.Format(time.RFC3339))
}
