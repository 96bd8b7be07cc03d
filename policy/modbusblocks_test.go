package policy

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/otgate/otgate/inspect/modbus"
	"github.com/otgate/otgate/site"
)

func gatewayPolicy(t testing.TB, old, new string) *Policy {
	t.Helper()
	src, err := readFile("../site/testdata/gateway-site.yaml")
	if err != nil {
		t.Fatal(err)
	}
	text := string(src)
	if old != "" {
		if strings.Count(text, old) != 1 {
			t.Fatalf("edit: %q occurs %d times in gateway-site.yaml", old, strings.Count(text, old))
		}
		text = strings.Replace(text, old, new, 1)
	}
	s, err := site.Parse("gateway-site.yaml", []byte(text), site.Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	p, err := Compile(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func judge(t *testing.T, p *modbus.Policy, unit byte, pdu ...byte) modbus.Decision {
	t.Helper()
	adu := append([]byte{0, 9, 0, 0, 0, byte(len(pdu) + 1), unit}, pdu...)
	var req modbus.Request
	if err := req.Parse(adu); err != nil {
		t.Fatalf("parse % x: %v", adu, err)
	}
	return p.Judge(&req)
}

// A gateway grant's decision carries all its blocks: the session judges
// each request by its unit's block, and explain shows them.
func TestDecideModbusBlocks(t *testing.T) {
	p := gatewayPolicy(t, "", "")
	tm := at(t, "2026-12-02T10:00:00+01:00")
	d := p.Decide(Request{User: "alice", Asset: "rtu-gw", Protocol: "modbus", Source: netip.MustParseAddr("192.0.2.50"), Time: tm})
	if !d.Allow || d.Rule != "plc-gw-rw" || d.Modbus == nil {
		t.Fatalf("decision %+v", d)
	}
	if v := judge(t, d.Modbus, 1, 6, 0, 52, 0, 7); !v.Allow || v.Rule != "plc-gw-rw units 1" {
		t.Errorf("unit 1 write: %+v", v)
	}
	if v := judge(t, d.Modbus, 2, 6, 0, 52, 0, 7); v.Allow || v.Exception != modbus.ExIllegalFunction || v.Rule != "plc-gw-rw units 2" {
		t.Errorf("unit 2 write: %+v", v)
	}
	if v := judge(t, d.Modbus, 9, 3, 0, 0, 0, 1); v.Allow || v.Exception != modbus.ExGatewayPathUnavailable || v.Rule != "plc-gw-rw" {
		t.Errorf("unit 9: %+v", v)
	}
	e, err := p.Explain("alice", "rtu-gw", tm)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"plc-gw-rw units 1: functions [read-write]; holding-registers read 0-99 write 50-55; limit holding-registers 52: 0..100",
		"plc-gw-rw units 2: functions [read-only]; input-registers read 0-9",
		"plc-gw-rw units 3: functions [diagnostics]",
	}
	if len(e.Decisions) != 1 || strings.Join(e.Decisions[0].Modbus, "\n") != strings.Join(want, "\n") {
		t.Errorf("explain modbus rules:\n%s\nwant:\n%s", strings.Join(e.Decisions[0].Modbus, "\n"), strings.Join(want, "\n"))
	}
}

// A reload that changes any one block, or turns the blocks into a single
// mapping, changes the session's rules; the same blocks do not.
func TestReevaluateModbusBlocks(t *testing.T) {
	old := gatewayPolicy(t, "", "")
	sess := Session{User: "alice", Asset: "rtu-gw", Protocol: "modbus", Start: at(t, "2026-12-02T09:00:00+01:00")}
	tm := at(t, "2026-12-02T10:00:00+01:00")
	before := Reevaluate(nil, old, sess, tm).Decision.Modbus
	changed := func(r Reevaluation) bool { return r.Decision.Modbus == nil || !r.Decision.Modbus.SameRules(before) }
	if r := Reevaluate(old, gatewayPolicy(t, "", ""), sess, tm); !r.Allowed || changed(r) {
		t.Errorf("same blocks: %+v", r)
	}
	for _, c := range []struct{ name, old, new string }{
		{"last block's range", `          read: ["0-9"]`, `          read: ["0-19"]`},
		{"last block's functions", "        functions: [diagnostics]", "        functions: [diagnostics, read-only]"},
		{"a unit moved", "      - units: [3]", "      - units: [3, 4]"},
	} {
		if r := Reevaluate(old, gatewayPolicy(t, c.old, c.new), sess, tm); !r.Allowed || !changed(r) {
			t.Errorf("%s: %+v", c.name, r)
		}
	}
	// The first block alone, as a single mapping: unit 1 may do the same,
	// but the session's rules are not the same.
	src, err := readFile("../site/testdata/gateway-site.yaml")
	if err != nil {
		t.Fatal(err)
	}
	blocks := string(src)[strings.Index(string(src), "    modbus:\n"):]
	single := gatewayPolicy(t, blocks, `    modbus:
      units: [1]
      functions: [read-write]
      holding-registers:
        read: ["0-99"]
        write: ["50-55"]
      limits:
        - {registers: "52", min: 0, max: 100}
`)
	if single.grants[0].Modbus == nil || single.grants[0].ModbusBlocks != nil {
		t.Fatal("the edit did not give a single mapping")
	}
	if r := Reevaluate(old, single, sess, tm); !r.Allowed || !changed(r) {
		t.Errorf("blocks to one mapping: %+v", r)
	}
}

// Compile re-checks what it relies on: a grant (say, from a damaged or
// hand-made applied policy) with both forms, or blocks sharing a unit, is
// refused, not guessed at.
func TestCompileModbusBlocksRechecks(t *testing.T) {
	s, _, err := site.Load("../site/testdata/gateway-site.yaml", site.Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	both := *s
	both.Access.Grants = append([]site.Grant(nil), s.Access.Grants...)
	both.Access.Grants[0].Modbus = &both.Access.Grants[0].ModbusBlocks[0]
	if _, err := Compile(&both); err == nil || !strings.Contains(err.Error(), `grant "plc-gw-rw" has both single modbus rules and per-unit blocks`) {
		t.Errorf("both forms: %v", err)
	}
	dup := *s
	dup.Access.Grants = append([]site.Grant(nil), s.Access.Grants...)
	dup.Access.Grants[0].ModbusBlocks = append([]modbus.Rules(nil), s.Access.Grants[0].ModbusBlocks...)
	dup.Access.Grants[0].ModbusBlocks[2].Units = []int{3, 1}
	if _, err := Compile(&dup); err == nil || !strings.Contains(err.Error(), `blocks[2].units[1]: unit 1 is also in blocks[0].units[0]`) {
		t.Errorf("unit in two blocks: %v", err)
	}
}
