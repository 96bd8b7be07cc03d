package modbus

import (
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

const demoRulesYAML = `
name: alice-plc7
units: [1]
functions: [read-write, diagnostics]
coils:
  read: ["0-15"]
  write: ["0"]
discrete-inputs:
  read: ["0-15"]
holding-registers:
  read: ["0-99"]
  write: ["50-55", 56]
input-registers:
  read: ["0-9"]
limits:
  - {registers: "52", min: 0, max: 100}
  - {registers: "54-55", min: -10, max: 10, signed: true}
`

func demoPolicy(t testing.TB) *Policy {
	t.Helper()
	var r Rules
	dec := yaml.NewDecoder(strings.NewReader(demoRulesYAML))
	dec.KnownFields(true)
	if err := dec.Decode(&r); err != nil {
		t.Fatalf("decode rules: %v", err)
	}
	p, err := r.Compile()
	if err != nil {
		t.Fatalf("compile rules: %v", err)
	}
	return p
}

func TestRulesYAMLRoundTrip(t *testing.T) {
	var r Rules
	if err := yaml.Unmarshal([]byte(demoRulesYAML), &r); err != nil {
		t.Fatal(err)
	}
	if got := r.HoldingRegisters.Write; len(got) != 2 || got[0] != (Range{50, 55}) || got[1] != (Range{56, 56}) {
		t.Fatalf("holding write = %v", got)
	}
	out, err := yaml.Marshal(&r)
	if err != nil {
		t.Fatal(err)
	}
	var back Rules
	if err := yaml.Unmarshal(out, &back); err != nil {
		t.Fatalf("re-read %s: %v", out, err)
	}
	if back.HoldingRegisters.Write[1] != (Range{56, 56}) || back.Limits[1] != r.Limits[1] {
		t.Fatalf("round trip changed rules:\n%s", out)
	}
}

func TestRulesValidate(t *testing.T) {
	cases := []struct {
		name string
		yaml string
		err  string
	}{
		{"no units", "functions: [read-only]", `units: empty`},
		{"unit 256", "units: [256]\nfunctions: [read-only]", "units[0]: 256 out of range 0..255"},
		{"no functions", "units: [1]", "functions: empty"},
		{"unknown set", "units: [1]\nfunctions: [read-only, everything]", `functions[1]: unknown function "everything"`},
		{"function 200", "units: [1]\nfunctions: ['200']", "functions[0]: function code 200 is not a request function"},
		{"function 300", "units: [1]\nfunctions: ['300']", "functions[0]: function code 300 is not a request function"},
		// Octal would turn 017 into 15 (write multiple coils), 020 into 16.
		{"leading zero", "units: [1]\nfunctions: [read-only, '017']", `functions[1]: function code "017" has a leading zero, which YAML and octal notation read as octal 15`},
		{"leading zero, unquoted", "units: [1]\nfunctions: [020]", `functions[0]: function code "020" has a leading zero`},
		{"octal prefix", "units: [1]\nfunctions: ['0o17']", `functions[0]: function code "0o17": write it in decimal (16) or hexadecimal (0x10)`},
		{"underscore", "units: [1]\nfunctions: ['1_6']", `functions[0]: function code "1_6": write it in decimal`},
		{"sign", "units: [1]\nfunctions: ['+16']", `functions[0]: function code "+16": write it in decimal`},
		{"bad hex", "units: [1]\nfunctions: ['0x1g']", `functions[0]: function code "0x1g" is not a hexadecimal number in 0x00..0xff`},
		{"hex over a byte", "units: [1]\nfunctions: ['0x100']", `functions[0]: function code "0x100" is not a hexadecimal number`},
		{"hex not a request", "units: [1]\nfunctions: ['0x83']", "functions[0]: function code 131 is not a request function"},
		{"write input regs", "units: [1]\nfunctions: [read-only]\ninput-registers: {write: ['0']}", "input-registers.write: input-registers are read-only"},
		{"write discrete", "units: [1]\nfunctions: [read-only]\ndiscrete-inputs: {write: ['0']}", "discrete-inputs.write"},
		{"limit min>max", "units: [1]\nfunctions: [read-write]\nlimits: [{registers: '1', min: 5, max: 4}]", "limits[0]: min 5 is greater than max 4"},
		{"limit negative unsigned", "units: [1]\nfunctions: [read-write]\nlimits: [{registers: '1', min: -5, max: 4}]", "limits[0].min: -5 out of range 0..65535"},
		{"limit signed big", "name: g\nunits: [1]\nfunctions: [read-write]\nlimits: [{registers: '1', min: 0, max: 40000, signed: true}]", `modbus rules "g": limits[0].max: 40000 out of range -32768..32767`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var r Rules
			if err := yaml.Unmarshal([]byte(c.yaml), &r); err != nil {
				t.Fatalf("yaml: %v", err)
			}
			err := r.Validate()
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Fatalf("Validate = %v, want %q", err, c.err)
			}
		})
	}
	bad := []struct{ yaml, err string }{
		{"units: [1]\nfunctions: [read-only]\ncoils: {read: ['9-3']}", `line 3: range "9-3": first address 9 is after last address 3`},
		{"units: [1]\nfunctions: [read-only]\ncoils: {read: ['x']}", `range "x": address "x" is not a number`},
		{"units: [1]\nfunctions: [read-only]\ncoils: {read: ['70000']}", `address "70000" is not a number in 0..65535`},
		{"units: [1]\nfunctions: [read-only]\ncoils: {read: [[1]]}", "line 3: address range must be a scalar"},
		// YAML reads +010 as octal 8: a grant must not open register 10
		// where its text reads 8 to YAML, nor take a sign at all.
		{"units: [1]\nfunctions: [read-write]\nholding-registers: {write: [+010]}", `address "+010" is not a decimal number`},
		{"units: [1]\nfunctions: [read-write]\nholding-registers: {write: ['50-+52']}", `address "+52" is not a decimal number`},
	}
	for _, c := range bad {
		var r Rules
		if err := yaml.Unmarshal([]byte(c.yaml), &r); err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("yaml %q: err %v, want %q", c.yaml, err, c.err)
		}
	}
}

func TestJudge(t *testing.T) {
	p := demoPolicy(t)
	cases := []struct {
		name   string
		unit   uint8
		pdu    string
		exc    ExceptionCode // 0 = allow
		reason string
	}{
		{"read holding in range", 1, "03 0000 0064", 0, ""},
		{"read holding span past range", 1, "03 005a 000b", ExIllegalDataAddress, `modbus rules "alice-plc7": read holding 90..100 outside read ranges 0-99`},
		{"read holding start outside", 1, "03 0064 0001", ExIllegalDataAddress, "read holding 100 outside"},
		{"write register allowed", 1, "06 0034 0037", 0, ""},
		{"write register outside", 1, "06 0039 0001", ExIllegalDataAddress, "write holding 57 outside write ranges 50-56"},
		{"write multiple across merged ranges", 1, "10 0032 0007 0e 0000 0000 0000 0000 0000 0000 0000", 0, ""},
		{"write multiple past range", 1, "10 0035 0005 0a 0000 0000 0000 0000 0000", ExIllegalDataAddress, "write holding 53..57 outside"},
		{"write register over limit", 1, "06 0034 0065", ExIllegalDataValue, "write holding 52 = 101 outside limit 0..100"},
		{"write multiple signed limit", 1, "10 0036 0002 04 fff6 000b", ExIllegalDataValue, "write holding 55 = 11 outside limit -10..10"},
		{"write multiple signed ok", 1, "10 0036 0002 04 fff6 000a", 0, ""},
		{"mask write limited", 1, "16 0034 00f2 0025", ExIllegalDataValue, "mask write to holding 52, which has a value limit 0..100, cannot be checked"},
		{"mask write unlimited", 1, "16 0033 00f2 0025", 0, ""},
		{"read write ok", 1, "17 0000 0002 0032 0001 02 0005", 0, ""},
		{"read write bad write span", 1, "17 0000 0002 0000 0001 02 0005", ExIllegalDataAddress, "write holding 0 outside"},
		{"read write limit", 1, "17 0000 0002 0034 0001 02 0500", ExIllegalDataValue, "write holding 52 = 1280"},
		{"write coil allowed", 1, "05 0000 ff00", 0, ""},
		{"write coil outside", 1, "05 0001 ff00", ExIllegalDataAddress, "write coil 1 outside write ranges 0"},
		{"read discrete", 1, "02 0000 0010", 0, ""},
		{"read discrete past", 1, "02 0000 0011", ExIllegalDataAddress, "read discrete 0..16 outside read ranges 0-15"},
		{"read input", 1, "04 0009 0001", 0, ""},
		{"read input outside", 1, "04 000a 0001", ExIllegalDataAddress, "read input 10"},
		{"fifo pointer in range", 1, "18 0005", 0, ""},
		{"fifo pointer outside", 1, "18 0100", ExIllegalDataAddress, "read holding 256..287"},
		// The queue (count register, then up to 31 data registers) lies
		// after the pointer: a pointer at the end of the read range would
		// return registers 100..130, which the grant does not let be read.
		{"fifo queue past range", 1, "18 0063", ExIllegalDataAddress, "read holding 99..130 outside read ranges 0-99"},
		{"fifo queue at range end", 1, "18 0044", 0, ""},
		{"fifo queue one past range end", 1, "18 0045", ExIllegalDataAddress, "read holding 69..100 outside"},
		{"wrong unit", 2, "03 0000 0001", ExGatewayPathUnavailable, "unit 2 not in allowed units [1]"},
		{"diag query allowed", 1, "08 0000 1234", 0, ""},
		{"diag force listen only denied", 1, "08 0004 0000", ExIllegalFunction, "function 8 (diagnostics force-listen-only-mode) not in allowed functions [read-write diagnostics]"},
		{"diag unknown sub denied", 1, "08 0013 0000", ExIllegalFunction, "diagnostics sub-function 0x13"},
		{"device id allowed", 1, "2b 0e 01 00", 0, ""},
		{"canopen denied", 1, "2b 0d 00", ExIllegalFunction, "function 43 (MEI type 13)"},
		{"file record denied", 1, "14 07 06 0004 0001 0002", ExIllegalFunction, "function 20 (read-file-record)"},
		{"user defined denied", 1, "41", ExIllegalFunction, "function 65 (user-defined-65)"},
		{"reserved denied", 1, "5a 0000", ExIllegalFunction, "function 90 (function-90)"},
		{"report server id", 1, "11", 0, ""},
		{"read coils in range", 1, "01 0000 0010", 0, ""},
		{"read coils past range", 1, "01 0008 0009", ExIllegalDataAddress, "read coil 8..16 outside read ranges 0-15"},
		{"write coils allowed", 1, "0f 0000 0001 01 01", 0, ""},
		{"write coils past range", 1, "0f 0000 0002 01 03", ExIllegalDataAddress, "write coil 0..1 outside write ranges 0"},
		{"write coils no write range", 1, "0f 0005 0001 01 01", ExIllegalDataAddress, "write coil 5 outside write ranges 0"},
		{"read exception status", 1, "07", 0, ""},
		{"comm event counter", 1, "0b", 0, ""},
		{"comm event log", 1, "0c", 0, ""},
		{"write register without a limit", 1, "06 0035 ffff", 0, ""},
		{"write multiple one value over limit", 1, "10 0033 0002 04 0001 0065", ExIllegalDataValue, "write holding 52 = 101 outside limit 0..100"},
		{"broadcast unit 0", 0, "06 0034 0001", ExGatewayPathUnavailable, "unit 0 not in allowed units [1]"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var req Request
			if err := req.Parse(adu(1, c.unit, pdu(t, c.pdu))); err != nil {
				t.Fatalf("parse %s: %v", c.pdu, err)
			}
			d := p.Judge(&req)
			if c.exc == 0 {
				if !d.Allow || d.Reason != "" {
					t.Fatalf("Judge = %+v, want allow", d)
				}
				return
			}
			if d.Allow || d.Exception != c.exc || !strings.Contains(d.Reason, c.reason) || d.Rule != "alice-plc7" {
				t.Fatalf("Judge = %+v, want exception %v with reason containing %q", d, c.exc, c.reason)
			}
		})
	}
}

func TestFunctionSets(t *testing.T) {
	compile := func(fns ...string) *Policy {
		r := Rules{Units: []int{1}, Functions: fns, HoldingRegisters: TableRanges{Read: []Range{{0, 65535}}, Write: []Range{{0, 65535}}}}
		p, err := r.Compile()
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	allowed := func(p *Policy, h string) bool {
		var req Request
		if err := req.Parse(adu(1, 1, pdu(t, h))); err != nil {
			t.Fatalf("parse %s: %v", h, err)
		}
		return p.Judge(&req).Allow
	}
	ro := compile("read-only")
	if !allowed(ro, "18 ffe0") || !allowed(ro, "18 ffff") {
		t.Error("read-only: a FIFO pointer near the end of the address space is judged up to 65535")
	}
	if !allowed(ro, "03 0000 0001") || allowed(ro, "06 0000 0001") || allowed(ro, "10 0000 0001 02 0000") || allowed(ro, "08 0000 0000") {
		t.Error("read-only: reads only")
	}
	rw := compile("read-write")
	if !allowed(rw, "06 0000 0001") || !allowed(rw, "17 0000 0001 0000 0001 02 0000") || allowed(rw, "07") {
		t.Error("read-write: reads and writes, no diagnostics")
	}
	prog := compile("programming")
	if !allowed(prog, "08 0004 0000") || allowed(prog, "08 0000 0000") || !allowed(prog, "15 09 06 0001 0000 0001 0000") || !allowed(prog, "6e") || allowed(prog, "03 0000 0001") {
		t.Error("programming: state-changing diagnostics, file records, user codes; no reads")
	}
	num := compile("8", "write-single-register")
	if !allowed(num, "08 0004 0000") || !allowed(num, "08 0013 0000") || !allowed(num, "06 0000 0000") || allowed(num, "03 0000 0001") {
		t.Error("a bare number allows every sub-function; names resolve")
	}
	// A number names exactly that function, in decimal or 0x hex: 17 is
	// report server id, never octal 15 (write multiple coils).
	for _, code := range []string{"17", "0x11", "0X11"} {
		p := compile(code)
		if !allowed(p, "11") || allowed(p, "0f 0000 0001 01 01") || allowed(p, "10 0000 0001 02 0000") {
			t.Errorf("functions [%s]: want report server id (17) only", code)
		}
	}
	if p := compile("0x10"); !allowed(p, "10 0000 0001 02 0000") || allowed(p, "0a") {
		t.Error("functions [0x10]: want write multiple registers (16)")
	}
}
