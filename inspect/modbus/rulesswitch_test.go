package modbus_test

import (
	"net"
	"sync/atomic"
	"testing"

	"github.com/otgate/otgate/inspect/modbus"
)

// Config.Rules: the rules a live session's requests are judged by can be
// moved to another grant's between two requests (the proxy's handover);
// the next request is judged, and recorded, under them.
func TestRulesMoveBetweenRequests(t *testing.T) {
	device := startPlant(t)
	var rules atomic.Pointer[modbus.Policy]
	g := startGateWith(t, device, modbus.Enforce, gateOptions{rules: &rules})
	write60 := writeHolding60(t, dial(t, g.addr))
	// Config.Policy (alice-plc7: holding 50-55 writable) while Rules holds none.
	if rsp := write60(1); rsp[7] != 0x86 || rsp[8] != 0x02 {
		t.Fatalf("write of holding 60 under alice-plc7: % x, want exception 02", rsp)
	}
	// The same rules under another grant's name: denied alike, in its name.
	var r modbus.Rules
	r.Name, r.Units, r.Functions = "alice-late", []int{1}, []string{"read-write", "diagnostics"}
	r.Coils = modbus.TableRanges{Read: []modbus.Range{{First: 0, Last: 15}}, Write: []modbus.Range{{First: 0, Last: 1}}}
	r.DiscreteInputs = modbus.TableRanges{Read: []modbus.Range{{First: 0, Last: 15}}}
	r.HoldingRegisters = modbus.TableRanges{Read: []modbus.Range{{First: 0, Last: 99}}, Write: []modbus.Range{{First: 50, Last: 55}}}
	r.InputRegisters = modbus.TableRanges{Read: []modbus.Range{{First: 0, Last: 15}}}
	r.Limits = []modbus.ValueLimit{{Registers: modbus.Range{First: 52, Last: 52}, Min: 0, Max: 100}}
	late, err := r.Compile()
	if err != nil {
		t.Fatal(err)
	}
	if !policy(t).SameRules(late) {
		t.Fatal("alice-late's rules are not alice-plc7's: the test's premise")
	}
	rules.Store(late)
	if rsp := write60(2); rsp[7] != 0x86 || rsp[8] != 0x02 {
		t.Fatalf("write of holding 60 under alice-late: % x, want exception 02", rsp)
	}
	// Rules that allow it: forwarded, the device's answer comes back.
	r.Name = "alice-wider"
	r.HoldingRegisters.Write = []modbus.Range{{First: 50, Last: 60}}
	wider, err := r.Compile()
	if err != nil {
		t.Fatal(err)
	}
	rules.Store(wider)
	if rsp := write60(3); rsp[7] != 0x06 {
		t.Fatalf("write of holding 60 under alice-wider: % x, want the device's echo", rsp)
	}
	recs := g.rec.wait(t, 3)
	for i, want := range []struct {
		rule    string
		verdict modbus.Verdict
	}{{"alice-plc7", modbus.VerdictDenied}, {"alice-late", modbus.VerdictDenied}, {"alice-wider", modbus.VerdictAllowed}} {
		if recs[i].Rule != want.rule || recs[i].Verdict != want.verdict {
			t.Errorf("record %d: rule %q verdict %v, want %q %v", i+1, recs[i].Rule, recs[i].Verdict, want.rule, want.verdict)
		}
	}
}

// Config.Monitoring: a live session's mode can be switched between two
// requests (the proxy, when a reload puts the zone into or out of monitor
// mode); the next request is judged, and recorded, in the new mode. It
// wins over Config.Mode.
func TestModeSwitchesBetweenRequests(t *testing.T) {
	device := startPlant(t)
	var monitoring atomic.Bool
	g := startGateWith(t, device, modbus.Monitor, gateOptions{monitoring: &monitoring})
	write60 := writeHolding60(t, dial(t, g.addr))
	// Holding 60 is outside alice-plc7's write ranges.
	if rsp := write60(1); rsp[7] != 0x86 || rsp[8] != 0x02 {
		t.Fatalf("write of holding 60, enforcing: % x, want exception 02", rsp)
	}
	monitoring.Store(true)
	if rsp := write60(2); rsp[7] != 0x06 {
		t.Fatalf("write of holding 60, monitoring: % x, want the device's echo", rsp)
	}
	monitoring.Store(false)
	if rsp := write60(3); rsp[7] != 0x86 || rsp[8] != 0x02 {
		t.Fatalf("write of holding 60, enforcing again: % x, want exception 02", rsp)
	}
	recs := g.rec.wait(t, 3)
	for i, want := range []modbus.Verdict{modbus.VerdictDenied, modbus.VerdictWouldDeny, modbus.VerdictDenied} {
		if recs[i].Verdict != want {
			t.Errorf("record %d: verdict %v, want %v", i+1, recs[i].Verdict, want)
		}
	}
}

// writeHolding60 returns a function that writes holding register 60 of
// unit 1 (= 1) on c with a transaction id and returns the answer; c is
// closed when the test ends.
func writeHolding60(t *testing.T, c net.Conn) func(tid uint16) []byte {
	t.Cleanup(func() { c.Close() })
	return func(tid uint16) []byte {
		t.Helper()
		if _, err := c.Write(frame(tid, 1, 0x06, 0, 60, 0, 1)); err != nil {
			t.Fatal(err)
		}
		return readFrame(t, c)
	}
}
