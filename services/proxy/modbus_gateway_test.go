package proxy

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/otgate/otgate/audit"
)

// gatewaySite is deviceSite with plc-1 as a TCP-to-serial gateway: the
// grant has a block of rules per device behind it. Unit 1 (a PLC) may
// read and write holding registers as deviceSite's single block allows,
// unit 2 (a drive) may only read its input registers 0-9; no block lists
// unit 3.
var gatewaySite = deviceSite[:strings.Index(deviceSite, "    modbus:\n")] + `    modbus:
      - units: [1]
        functions: [read-write]
        holding-registers:
          read: ["0-9"]
          write: ["5-6"]
      - units: [2]
        functions: [read-only]
        input-registers:
          read: ["0-9"]
`

// TestModbusGatewayUnitsThroughConnect: per-unit rule blocks end to end,
// with no Modbus code of the project on either side of the gate. The
// device is pymodbus's server serving units 1-3, each with data of its
// own, and journaling every request that reaches it; the client is
// pymodbus on `otgate connect`; the policy is a site file. A write unit
// 1's block allows reaches unit 1; the same write to unit 2, whose block
// allows reads only, is answered by the gate with exception 01 and
// pymodbus's transaction id and never reaches the device; unit 2's
// allowed read returns unit 2's data; unit 3, in no block, gets 0A. The
// records and the transcript name the deciding block. A reload that
// changes one block moves a live session under the grant to the new
// rules, its connection up. In monitor mode
// the write to unit 2 passes, recorded as would-deny by unit 2's block.
func TestModbusGatewayUnitsThroughConnect(t *testing.T) {
	if _, err := exec.LookPath("/usr/bin/python3"); err != nil {
		t.Skip("/usr/bin/python3 not installed")
	}
	l := newLab(t)
	journal := filepath.Join(t.TempDir(), "device-journal")
	startPymodbusInPlant(t, l, "--units", "1,2,3", "--journal", journal)
	sitePath := filepath.Join(t.TempDir(), "site.yaml")
	setMode := func(mode string) {
		t.Helper()
		if err := os.WriteFile(sitePath, []byte(strings.Replace(gatewaySite, "MODE", mode, 1)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	setMode("enforce")
	g, bin, port, lines := connectAlice(t, l, sitePath)
	sessionRe := regexp.MustCompile(`session ([0-9a-f]+) allowed by rule alice-plc`)
	deviceSaw := func() string {
		t.Helper()
		b, err := os.ReadFile(journal)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}

	// Unit 1: the write in its block's range reaches unit 1.
	checkResults(t, runPymodbus(t, port, 1, `[["wr",5,55], ["rh",5,1]]`), []string{"ok []", "ok [55]"})
	s1 := waitLine(t, lines, sessionRe)[1]

	// Unit 2: the same write is a function its block does not allow.
	res := runPymodbus(t, port, 2, `[["wr",5,55], ["ri",0,3], ["rh",5,1]]`)
	checkResults(t, res, []string{"exception 1", "ok [2000 2001 2002]", "exception 2"})
	s2 := waitLine(t, lines, sessionRe)[1]

	// Unit 3: no block lists it; the gate offers no path to it.
	checkResults(t, runPymodbus(t, port, 3, `[["ri",0,1]]`), []string{"exception 10"})
	s3 := waitLine(t, lines, sessionRe)[1]

	for _, s := range []string{s1, s2, s3} {
		g.waitEnd(s, EndClientClosed)
	}
	// The gate's exceptions carry pymodbus's transaction ids, and the
	// records name the block that decided.
	for _, c := range []struct {
		op     int
		reason string
	}{
		{0, `modbus rules "alice-plc units 2": function 6 (write-single-register) not in allowed functions [read-only]`},
		{2, `modbus rules "alice-plc units 2": read holding 5 outside read ranges none`},
	} {
		r := res[c.op]
		rec := g.waitRecord("the record of the denied transaction", func(b audit.Body) bool {
			p, ok := b.(audit.Payload)
			return ok && p.SessionID == s2 && p.Decoded != nil && int(p.Decoded.Transaction) == r.TID
		}).(audit.Payload)
		if d := rec.Decoded; d.Verdict != "denied" || int(d.Exception) != r.Exception || d.Unit != 2 || d.Reason != c.reason {
			t.Errorf("denied op %d: record %+v, want denied with exception %d, reason %q", c.op, *d, r.Exception, c.reason)
		}
	}

	saw := deviceSaw()
	t.Logf("the device saw:\n%s", saw)
	for _, want := range []string{"unit 1 function 6 address 5 count 1\n", "unit 1 function 3 address 5 count 1\n", "unit 2 function 4 address 0 count 3\n"} {
		if !strings.Contains(saw, want) {
			t.Errorf("the device did not see %q", want)
		}
	}
	for _, never := range []string{"unit 2 function 6 ", "unit 2 function 3 ", "unit 3 "} {
		if strings.Contains(saw, never) {
			t.Errorf("a denied request reached the device: %q", never)
		}
	}

	text := showSession(t, bin, g, s2)
	t.Logf("otgate audit show --session %s:\n%s", s2, text)
	for _, want := range []string{
		` alice plc-1 unit 2 write holding 5 = 55 -> denied, exception 01 illegal function: modbus rules "alice-plc units 2": function 6 (write-single-register) not in allowed functions [read-only]`,
		" alice plc-1 unit 2 read input 0..2 -> ok = 2000 2001 2002 (",
		` alice plc-1 unit 2 read holding 5 -> denied, exception 02 illegal data address: modbus rules "alice-plc units 2": read holding 5 outside read ranges none`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("transcript lacks %q", want)
		}
	}
	if text := showSession(t, bin, g, s3); !strings.Contains(text, ` alice plc-1 unit 3 read input 0 -> denied, exception 0a gateway path unavailable: modbus rules "alice-plc": unit 3 not in allowed units [1 2]`) {
		t.Errorf("unit 3's transcript lacks its denial:\n%s", text)
	}

	// A reload that changes nothing leaves a live session alone; one that
	// changes a single block ends it (fail closed: the client reconnects
	// under the new blocks).
	c, err := net.Dial("tcp", "127.0.0.1:"+port)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := modbusExchange(t, c, "000100000006020400000001"); got != "00010000000502040207d0" {
		t.Fatalf("unit 2 read input 0 = %s, want 2000 (0x07d0)", got)
	}
	s5 := waitLine(t, lines, sessionRe)[1]
	if rep, err := g.srv.Reload(); err != nil || rep.Ended != 0 {
		t.Fatalf("Reload of the same site = %d, %v; want no session ended", rep.Ended, err)
	}
	if got := modbusExchange(t, c, "000200000006020400010001"); got != "00020000000502040207d1" {
		t.Fatalf("unit 2 read input 1 after an unchanged reload = %s, want 2001 (0x07d1)", got)
	}
	if got := modbusExchange(t, c, "0003000000060204000c0001"); got != "000300000003028402" {
		t.Fatalf("unit 2 read input 12 (outside its block's 0-9) = %s, want exception 02", got)
	}
	// A reload that widens unit 2's block: the session goes on (its
	// connection stays up), recorded, and the read is now the device's.
	changed := strings.Replace(strings.Replace(gatewaySite, "MODE", "enforce", 1), "        input-registers:\n          read: [\"0-9\"]", "        input-registers:\n          read: [\"0-15\"]", 1)
	if changed == strings.Replace(gatewaySite, "MODE", "enforce", 1) {
		t.Fatal("the test's edit of unit 2's block matched nothing")
	}
	if err := os.WriteFile(sitePath, []byte(changed), 0o600); err != nil {
		t.Fatal(err)
	}
	if rep, err := g.srv.Reload(); err != nil || rep.Ended != 0 {
		t.Fatalf("Reload with unit 2's block changed = %d, %v; want no session ended", rep.Ended, err)
	}
	ev := g.waitEvent(EventSessionRules, "alice", `policy reload: other Modbus rules (grant "alice-plc") judge its requests from now on`)
	if ev.SessionID != s5 {
		t.Errorf("rules event %+v: want session %s", ev, s5)
	}
	if got := modbusExchange(t, c, "0004000000060204000c0001"); got != "00040000000502040207dc" {
		t.Fatalf("unit 2 read input 12 under the widened block = %s, want 2012 (0x07dc)", got)
	}
	c.Close()
	g.waitEnd(s5, EndClientClosed)
	if text := showSession(t, bin, g, s5); !strings.Contains(text, ` alice plc-1 unit 2 read input 12 -> denied, exception 02 illegal data address: modbus rules "alice-plc units 2": read input 12 outside read ranges 0-9`) ||
		!strings.Contains(text, `session-rules-changed`) ||
		!strings.Contains(text, ` alice plc-1 unit 2 read input 12 -> ok = 2012 (`) {
		t.Errorf("transcript of the session across the reload:\n%s", text)
	}

	// Monitor mode: unit 2's block would deny the write, which passes.
	setMode("monitor")
	if _, err := g.srv.Reload(); err != nil {
		t.Fatal(err)
	}
	checkResults(t, runPymodbus(t, port, 2, `[["wr",5,55]]`), []string{"ok []"})
	s4 := waitLine(t, lines, sessionRe)[1]
	g.waitEnd(s4, EndClientClosed)
	if text := showSession(t, bin, g, s4); !strings.Contains(text, ` alice plc-1 unit 2 write holding 5 = 55 -> ok (`) ||
		!strings.Contains(text, `[would deny, exception 01 illegal function: modbus rules "alice-plc units 2": function 6 (write-single-register) not in allowed functions [read-only]]`) {
		t.Errorf("monitor-mode transcript lacks the would-deny write by unit 2's block:\n%s", text)
	}
	if !strings.Contains(deviceSaw(), "unit 2 function 6 address 5 count 1\n") {
		t.Error("in monitor mode the write to unit 2 did not reach the device")
	}
}
