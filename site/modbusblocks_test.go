package site

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/otgate/otgate/inspect/modbus"
)

// editGateway returns testdata/gateway-site.yaml with old (occurring
// once) replaced by new.
func editGateway(t *testing.T, old, new string) string {
	t.Helper()
	src := string(readTestdata(t, "gateway-site.yaml"))
	if strings.Count(src, old) != 1 {
		t.Fatalf("edit: %q occurs %d times in gateway-site.yaml", old, strings.Count(src, old))
	}
	return strings.Replace(src, old, new, 1)
}

// TestParseModbusBlocks: modbus: as a list gives the grant one block per
// device, each compiled as a whole and judging only its own units.
func TestParseModbusBlocks(t *testing.T) {
	s, err := Parse("gateway-site.yaml", readTestdata(t, "gateway-site.yaml"), Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	g := &s.Access.Grants[0]
	if g.Modbus != nil || len(g.ModbusBlocks) != 3 || !g.HasModbusRules() {
		t.Fatalf("grant rules: single %v, %d blocks; want 3 blocks only", g.Modbus, len(g.ModbusBlocks))
	}
	want := []modbus.Rules{
		{Name: "plc-gw-rw", Units: []int{1}, Functions: []string{"read-write"},
			HoldingRegisters: modbus.TableRanges{Read: []modbus.Range{{First: 0, Last: 99}}, Write: []modbus.Range{{First: 50, Last: 55}}},
			Limits:           []modbus.ValueLimit{{Registers: modbus.Range{First: 52, Last: 52}, Min: 0, Max: 100}}},
		{Name: "plc-gw-rw", Units: []int{2}, Functions: []string{"read-only"},
			InputRegisters: modbus.TableRanges{Read: []modbus.Range{{First: 0, Last: 9}}}},
		{Name: "plc-gw-rw", Units: []int{3}, Functions: []string{"diagnostics"}},
	}
	if !reflect.DeepEqual(g.ModbusBlocks, want) {
		t.Fatalf("blocks:\n%+v\nwant:\n%+v", g.ModbusBlocks, want)
	}
	p, err := modbus.CompileBlocks(g.Name, g.ModbusBlocks)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		unit byte
		pdu  []byte
		exc  modbus.ExceptionCode
		rule string
	}{
		{1, []byte{6, 0, 52, 0, 7}, 0, "plc-gw-rw units 1"},
		{2, []byte{6, 0, 52, 0, 7}, modbus.ExIllegalFunction, "plc-gw-rw units 2"},
		{2, []byte{4, 0, 0, 0, 10}, 0, "plc-gw-rw units 2"},
		{3, []byte{8, 0, 0, 0x12, 0x34}, 0, "plc-gw-rw units 3"},
		{0, []byte{6, 0, 52, 0, 7}, modbus.ExGatewayPathUnavailable, "plc-gw-rw"},
	} {
		adu := append([]byte{0, 1, 0, 0, 0, byte(len(c.pdu) + 1), c.unit}, c.pdu...)
		var req modbus.Request
		if err := req.Parse(adu); err != nil {
			t.Fatalf("parse % x: %v", adu, err)
		}
		if d := p.Judge(&req); d.Exception != c.exc || d.Allow != (c.exc == 0) || d.Rule != c.rule {
			t.Errorf("unit %d % x: %+v, want exception %v by %q", c.unit, c.pdu, d, c.exc, c.rule)
		}
	}
}

// TestParseModbusBlocksErrors: every bad block, a unit in two blocks and
// an empty list are errors naming the file, the line and the field, and
// nothing is applied.
func TestParseModbusBlocksErrors(t *testing.T) {
	cases := []struct {
		name, old, new string
		want           []string
	}{
		{"unit in two blocks", "      - units: [2]\n", "      - units: [2, 1]\n",
			[]string{`gateway-site.yaml:43: grants[0].modbus[1].units[1]: unit 1 is also in grants[0].modbus[0].units[0] (line 36); one block judges each unit, list it in only one`}},
		// A broadcast the PLC's block allowed would reach the drive and the
		// meter past theirs.
		{"broadcast in a block", "      - units: [1]\n", "      - units: [1, 0]\n",
			[]string{`gateway-site.yaml:36: grants[0].modbus[0].units[1]: unit 0 is the broadcast address: the gateway sends it to every device behind it, past the other blocks' rules, so no block may list it (a broadcast is then refused, 0A); list the devices' own unit ids`}},
		{"empty list", "    modbus:\n      - units: [1]\n", "    modbus: []\n    x:\n      - units: [1]\n",
			[]string{`gateway-site.yaml:35: grants[0].modbus: empty list: give one block (units, functions, ranges) per device, or a single mapping for every unit`}},
		{"block without units", "      - units: [2]\n        functions: [read-only]\n", "      - functions: [read-only]\n",
			[]string{`gateway-site.yaml:43: grants[0].modbus[1].units: missing (required)`}},
		{"block writes input registers", "          read: [\"0-9\"]\n", "          read: [\"0-9\"]\n          write: [\"0\"]\n",
			[]string{`gateway-site.yaml:47: grants[0].modbus[1].input-registers.write: input-registers are read-only in Modbus; remove the write ranges`}},
		{"block bad function", "        functions: [diagnostics]\n", "        functions: [diagnostics, everything]\n",
			[]string{`gateway-site.yaml:48: grants[0].modbus[2].functions[1]: unknown function "everything"`}},
		{"block not a mapping", "      - units: [3]\n        functions: [diagnostics]\n", "      - [3]\n",
			[]string{`gateway-site.yaml:47: grants[0].modbus[2]: want a mapping, got a list`}},
		{"block unknown field", "      - units: [3]\n", "      - units: [3]\n        unit: 4\n",
			[]string{`gateway-site.yaml:48: grants[0].modbus[2].unit: unknown field (known: units, functions, coils, discrete-inputs, holding-registers, input-registers, limits)`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := editGateway(t, tc.old, tc.new)
			if tc.name == "empty list" {
				// Drop the blocks that followed, keeping the file otherwise whole.
				src = src[:strings.Index(src, "    x:\n")]
			}
			s, err := Parse("gateway-site.yaml", []byte(src), Options{Now: now})
			if s != nil || err == nil {
				t.Fatalf("Parse = %v, %v: want an error and no site (nothing applied)", s != nil, err)
			}
			var list ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("error is %T, want ErrorList", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not contain\n  %s\ngot:\n  %s", w, strings.ReplaceAll(err.Error(), "\n", "\n  "))
				}
			}
			if len(list) != len(tc.want) {
				t.Errorf("%d errors, want %d:\n  %s", len(list), len(tc.want), strings.ReplaceAll(err.Error(), "\n", "\n  "))
			}
		})
	}
}

// TestModbusBlocksOnDenyGrant: a deny grant may not carry blocks, as it
// may not carry a single block.
func TestModbusBlocksOnDenyGrant(t *testing.T) {
	src := editGateway(t, "    protocols: [modbus]\n", "    effect: deny\n    protocols: [modbus]\n")
	_, err := Parse("gateway-site.yaml", []byte(src), Options{Now: now})
	if err == nil || !strings.Contains(err.Error(), "gateway-site.yaml:36: grants[0].modbus: a deny grant has no protocol rules") {
		t.Fatalf("Parse: %v", err)
	}
}

// TestCompileModbusBlocksRoundTrip: the blocks survive the applied
// policy's CBOR unchanged, deterministically, under a key of their own.
func TestCompileModbusBlocksRoundTrip(t *testing.T) {
	src := readTestdata(t, "gateway-site.yaml")
	s, err := Parse("gateway-site.yaml", src, Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	doc, err := Compile(s, "gateway-site.yaml", src)
	if err != nil {
		t.Fatal(err)
	}
	a, err := Decode(doc)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a.Site.Access.Grants[0].ModbusBlocks, s.Access.Grants[0].ModbusBlocks) || a.Site.Access.Grants[0].Modbus != nil {
		t.Fatalf("round trip changed the blocks:\n%+v\nwant:\n%+v", a.Site.Access.Grants[0].ModbusBlocks, s.Access.Grants[0].ModbusBlocks)
	}
	again, err := Compile(&a.Site, a.Source, src)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(doc, again) {
		t.Error("decode + compile does not reproduce the document")
	}
}

// TestAppliedBeforeModbusBlocks: a policy applied by the version before
// per-unit blocks (testdata/gateway-v1.applied.cbor, compiled from
// gateway-v1.yaml) decodes to the same grant this version reads from the
// same file, and encodes again to the very same bytes: key 14 kept its
// meaning.
func TestAppliedBeforeModbusBlocks(t *testing.T) {
	old := readTestdata(t, "gateway-v1.applied.cbor")
	a, err := Decode(old)
	if err != nil {
		t.Fatal(err)
	}
	src := readTestdata(t, "gateway-v1.yaml")
	s, err := Parse("gateway-v1.yaml", src, Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	g := a.Site.Access.Grants[0]
	if g.Modbus == nil || g.ModbusBlocks != nil || !reflect.DeepEqual(g, s.Access.Grants[0]) {
		t.Fatalf("old applied grant:\n%+v\nthe file today:\n%+v", g, s.Access.Grants[0])
	}
	doc, err := Compile(s, "gateway-v1.yaml", src)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(doc, old) {
		t.Error("this version compiles gateway-v1.yaml to other bytes than the version before")
	}
}
