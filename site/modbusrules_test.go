package site

import (
	"errors"
	"strings"
	"testing"

	"github.com/otgate/otgate/inspect/modbus"
)

// engineerModbus is the modbus rules block of the example site's first
// grant (engineer-day, line 70), from its table ranges on.
const engineerModbus = "      holding-registers:\n        read: [\"0-99\"]\n        write: [\"50-55\"]\n"

// TestParseModbusRulesErrors: every bad value in a grant's modbus rules is
// an error naming the file, the line and the field, and nothing is applied.
func TestParseModbusRulesErrors(t *testing.T) {
	limits := func(l string) string { return engineerModbus + "      limits:\n        - " + l + "\n" }
	cases := []struct {
		name, old, new string
		want           []string
	}{
		{"no units", "      units: [1]\n      functions: [read-write]\n      holding", "      units: []\n      functions: [read-write]\n      holding",
			[]string{`example-site.yaml:71: grants[0].modbus.units: want at least one unit id (0..255)`}},
		{"units missing", "      units: [1]\n      functions: [read-write]\n      holding", "      functions: [read-write]\n      holding",
			[]string{`example-site.yaml:71: grants[0].modbus.units: missing (required)`}},
		{"unit not a number", "      units: [1]\n      functions: [read-write]\n      holding", "      units: [one]\n      functions: [read-write]\n      holding",
			[]string{`example-site.yaml:71: grants[0].modbus.units[0]: want an integer, got str "one"`}},
		{"no functions", "      units: [1]\n      functions: [read-write]\n      holding", "      units: [1]\n      functions: []\n      holding",
			[]string{`example-site.yaml:72: grants[0].modbus.functions: want at least one function set, name or code`}},
		{"function 200", "      functions: [read-write]\n      holding", "      functions: [read-write, 200]\n      holding",
			[]string{`example-site.yaml:72: grants[0].modbus.functions[1]: function code 200 is not a request function (valid: 1..127)`}},
		{"function code with a leading zero (octal 15 to YAML)", "      functions: [read-write]\n      holding", "      functions: [read-write, 017]\n      holding",
			[]string{`example-site.yaml:72: grants[0].modbus.functions[1]: function code "017" has a leading zero, which YAML and octal notation read as octal 15; write the decimal number without it, or hexadecimal with 0x`}},
		{"function not a scalar", "      functions: [read-write]\n      holding", "      functions: [read-write, {code: 3}]\n      holding",
			[]string{`example-site.yaml:72: grants[0].modbus.functions[1]: want a function set, name or code`}},
		{"address past 65535", engineerModbus, "      holding-registers:\n        read: [\"0-65536\"]\n",
			[]string{`example-site.yaml:74: grants[0].modbus.holding-registers.read[0]: range "0-65536": address "65536" is not a number in 0..65535`}},
		{"write to discrete inputs", engineerModbus, engineerModbus + "      discrete-inputs:\n        write: [\"0\"]\n",
			[]string{`example-site.yaml:77: grants[0].modbus.discrete-inputs.write: discrete-inputs are read-only in Modbus; remove the write ranges`}},
		{"table not a map", engineerModbus, engineerModbus + "      coils: [\"0-1\"]\n",
			[]string{`example-site.yaml:76: grants[0].modbus.coils:`}},
		{"limits empty", engineerModbus, engineerModbus + "      limits: []\n",
			[]string{`example-site.yaml:76: grants[0].modbus.limits: empty list (leave limits out for no value limits)`}},
		{"limits no value", engineerModbus, engineerModbus + "      limits:\n      #  - {registers: \"52\", min: 0, max: 100}\n",
			[]string{`example-site.yaml:76: grants[0].modbus.limits: no value (leave limits out for no value limits)`}},
		{"limit min over max", engineerModbus, limits(`{registers: "52", min: 10, max: 5}`),
			[]string{`example-site.yaml:77: grants[0].modbus.limits[0].max: max 5 is less than min 10`}},
		{"limit negative unsigned", engineerModbus, limits(`{registers: "52", min: -1, max: 5}`),
			[]string{`example-site.yaml:77: grants[0].modbus.limits[0].min: -1 is out of range 0..65535`}},
		{"limit signed over 32767", engineerModbus, limits(`{registers: "52", min: 0, max: 40000, signed: true}`),
			[]string{`example-site.yaml:77: grants[0].modbus.limits[0].max: 40000 is out of range -32768..32767`}},
		{"limit min out of range, max under it", engineerModbus, limits(`{registers: "52", min: -40000, max: -5, signed: true}`),
			[]string{`example-site.yaml:77: grants[0].modbus.limits[0].min: -40000 is out of range -32768..32767`}},
		{"limit signed not a bool", engineerModbus, limits(`{registers: "52", min: 0, max: 5, signed: maybe}`),
			[]string{`example-site.yaml:77: grants[0].modbus.limits[0].signed: want true or false, got str "maybe"`}},
		{"limit bad range", engineerModbus, limits(`{registers: "55-50", min: 0, max: 5}`),
			[]string{`example-site.yaml:77: grants[0].modbus.limits[0].registers: range "55-50": first address 55 is after last address 50`}},
		{"limit without max", engineerModbus, limits(`{registers: "52", min: 0}`),
			[]string{`example-site.yaml:77: grants[0].modbus.limits[0].max: missing`}},
		{"unit with a leading zero (octal to YAML)", "      units: [1]\n      functions: [read-write]\n      holding", "      units: [010]\n      functions: [read-write]\n      holding",
			[]string{`example-site.yaml:71: grants[0].modbus.units[0]: 010 has a leading zero, which YAML reads as octal; write the decimal number without it`}},
		{"unit in hex", "      units: [1]\n      functions: [read-write]\n      holding", "      units: [0x10]\n      functions: [read-write]\n      holding",
			[]string{`example-site.yaml:71: grants[0].modbus.units[0]: 0x10 is not a decimal number; write it in decimal`}},
		{"range with a leading zero", engineerModbus, "      holding-registers:\n        read: [\"010-20\"]\n",
			[]string{`example-site.yaml:74: grants[0].modbus.holding-registers.read[0]: range "010-20": address "010" has a leading zero`}},
		{"bare address with a leading zero", engineerModbus, "      holding-registers:\n        read: [052]\n",
			[]string{`example-site.yaml:74: grants[0].modbus.holding-registers.read[0]: range "052": address "052" has a leading zero`}},
		{"limit unknown field", engineerModbus, limits(`{registers: "52", min: 0, max: 5, step: 1}`),
			[]string{`example-site.yaml:77: grants[0].modbus.limits[0].step: unknown field (known: registers, min, max, signed)`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Parse("example-site.yaml", []byte(editExample(t, tc.old, tc.new)), Options{Now: now})
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

// TestParseModbusRulesValid: function codes given as numbers, value limits
// and every table reach the grant's rules and compile to a policy that
// judges as written.
func TestParseModbusRulesValid(t *testing.T) {
	src := editExample(t, "      functions: [read-write]\n"+engineerModbus, `      functions: [read-only, 6, write-multiple-coils]
      coils:
        read: ["0-15"]
        write: ["0-1"]
      discrete-inputs:
        read: [0]
      holding-registers:
        read: ["0-99"]
        write: ["50-55", 60]
      input-registers:
        read: ["0-9"]
      limits:
        - {registers: "52", min: 0, max: 100}
        - {registers: "54-55", min: -10, max: 10, signed: true}
`)
	s, err := Parse("example-site.yaml", []byte(src), Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	r := s.Access.Grants[0].Modbus
	if r == nil || r.Name != s.Access.Grants[0].Name {
		t.Fatalf("grant 0 rules %+v, want rules named after the grant", r)
	}
	p, err := r.Compile()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		pdu []byte
		exc modbus.ExceptionCode
	}{
		{[]byte{6, 0, 60, 0, 7}, 0},                                        // write 60: a single address range
		{[]byte{6, 0, 52, 0, 101}, modbus.ExIllegalDataValue},              // over the limit
		{[]byte{16, 0, 54, 0, 1, 2, 0xff, 0xf5}, modbus.ExIllegalFunction}, // 16 not granted (6 is)
		{[]byte{6, 0, 54, 0xff, 0xf5}, modbus.ExIllegalDataValue},          // -11 under the signed limit
		{[]byte{6, 0, 54, 0xff, 0xf6}, 0},                                  // -10
		{[]byte{15, 0, 0, 0, 2, 1, 3}, 0},                                  // coils 0-1
		{[]byte{15, 0, 1, 0, 2, 1, 3}, modbus.ExIllegalDataAddress},        // coils 1-2
		{[]byte{2, 0, 0, 0, 2}, modbus.ExIllegalDataAddress},               // discrete 0-1, only 0 granted
	} {
		adu := append([]byte{0, 1, 0, 0, 0, byte(len(c.pdu) + 1), 1}, c.pdu...)
		var req modbus.Request
		if err := req.Parse(adu); err != nil {
			t.Fatalf("parse % x: %v", c.pdu, err)
		}
		if d := p.Judge(&req); d.Exception != c.exc || d.Allow != (c.exc == 0) {
			t.Errorf("% x: %+v, want exception %v", c.pdu, d, c.exc)
		}
	}
}
