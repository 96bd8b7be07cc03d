package modbus

import (
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// A TCP-to-serial gateway's three devices: a PLC that may be read and
// partly written, a drive whose input registers may only be read, a meter
// that only answers diagnostics. Unit 0, the gateway's broadcast, is in
// no block (CompileBlocks refuses it there).
const gatewayBlocksYAML = `
- units: [1]
  functions: [read-write]
  holding-registers: {read: ["0-99"], write: ["50-55"]}
  limits: [{registers: "52", min: 0, max: 100}]
- units: [2]
  functions: [read-only]
  input-registers: {read: ["0-9"]}
- units: [3]
  functions: [diagnostics]
`

func gatewayPolicy(t testing.TB) *Policy {
	t.Helper()
	var blocks []Rules
	if err := yaml.Unmarshal([]byte(gatewayBlocksYAML), &blocks); err != nil {
		t.Fatal(err)
	}
	p, err := CompileBlocks("plc-gw", blocks)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestJudgeBlocks(t *testing.T) {
	p := gatewayPolicy(t)
	cases := []struct {
		name   string
		unit   uint8
		pdu    string
		exc    ExceptionCode // 0 = allow
		rule   string
		reason string
	}{
		{"plc write in range", 1, "06 0034 0037", 0, "plc-gw units 1", ""},
		{"plc limit", 1, "06 0034 0065", ExIllegalDataValue, "plc-gw units 1", `modbus rules "plc-gw units 1": write holding 52 = 101 outside limit 0..100`},
		{"plc input registers not granted", 1, "04 0000 0001", ExIllegalDataAddress, "plc-gw units 1", "read input 0 outside read ranges none"},
		// A broadcast would reach the drive and the meter too: no block
		// judges it.
		{"broadcast write", 0, "06 0032 0001", ExGatewayPathUnavailable, "plc-gw", "unit 0 not in allowed units [1 2 3]"},
		// The same write the PLC may do is a function the drive's block
		// does not allow.
		{"drive write", 2, "06 0034 0037", ExIllegalFunction, "plc-gw units 2", `modbus rules "plc-gw units 2": function 6 (write-single-register) not in allowed functions [read-only]`},
		{"drive read input", 2, "04 0000 000a", 0, "plc-gw units 2", ""},
		{"drive read input past", 2, "04 0005 0006", ExIllegalDataAddress, "plc-gw units 2", "read input 5..10 outside read ranges 0-9"},
		{"drive holding not granted", 2, "03 0000 0001", ExIllegalDataAddress, "plc-gw units 2", "read holding 0 outside read ranges none"},
		{"meter diagnostics", 3, "08 0000 1234", 0, "plc-gw units 3", ""},
		{"meter read", 3, "03 0000 0001", ExIllegalFunction, "plc-gw units 3", "function 3 (read-holding-registers) not in allowed functions [diagnostics]"},
		{"unit in no block", 4, "03 0000 0001", ExGatewayPathUnavailable, "plc-gw", `modbus rules "plc-gw": unit 4 not in allowed units [1 2 3]`},
		{"unit 255 in no block", 255, "08 0000 1234", ExGatewayPathUnavailable, "plc-gw", "unit 255 not in allowed units"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var req Request
			if err := req.Parse(adu(7, c.unit, pdu(t, c.pdu))); err != nil {
				t.Fatalf("parse %s: %v", c.pdu, err)
			}
			d := p.Judge(&req)
			if d.Rule != c.rule {
				t.Errorf("Rule = %q, want %q", d.Rule, c.rule)
			}
			if c.exc == 0 {
				if !d.Allow || d.Reason != "" {
					t.Fatalf("Judge = %+v, want allow", d)
				}
				return
			}
			if d.Allow || d.Exception != c.exc || !strings.Contains(d.Reason, c.reason) {
				t.Fatalf("Judge = %+v, want exception %v with reason containing %q", d, c.exc, c.reason)
			}
		})
	}
}

// Picking a block must not cost the hot path an allocation.
func TestJudgeBlocksDoesNotAllocate(t *testing.T) {
	p := gatewayPolicy(t)
	var plc, drive Request
	if err := plc.Parse(adu(1, 1, pdu(t, "10 0032 0002 04 0001 0002"))); err != nil {
		t.Fatal(err)
	}
	if err := drive.Parse(adu(2, 2, pdu(t, "04 0000 0001"))); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() {
		if !p.Judge(&plc).Allow || !p.Judge(&drive).Allow {
			t.Fatal("denied")
		}
	}); n != 0 {
		t.Errorf("Judge allocates %v times per allowed pair", n)
	}
}

func TestCompileBlocksErrors(t *testing.T) {
	cases := []struct {
		name string
		yaml string
		err  string
	}{
		{"none", "[]", `modbus rules "gw": no blocks`},
		{"unit in two blocks", "[{units: [1, 2], functions: [read-only]}, {units: [3, 2], functions: [read-only]}]",
			`modbus rules "gw": blocks[1].units[1]: unit 2 is also in blocks[0].units[1]; one block judges each unit`},
		// The PLC's block would decide for the drive: a broadcast write
		// (unit 0) the PLC may do reaches the read-only drive too.
		{"broadcast in a block", "[{units: [1, 0], functions: [read-write], holding-registers: {write: ['50']}}, {units: [2], functions: [read-only]}]",
			`modbus rules "gw": blocks[0].units[1]: unit 0 is the broadcast address: the gateway sends it to every device behind it`},
		{"broadcast alone", "[{units: [0], functions: [diagnostics]}]", "blocks[0].units[0]: unit 0 is the broadcast address"},
		{"bad block", "[{units: [1], functions: [read-only]}, {units: [2], functions: [read-only], input-registers: {write: ['0']}}]",
			`modbus rules "gw": blocks[1]: input-registers.write: input-registers are read-only`},
		{"block without units", "[{functions: [read-only]}]", `modbus rules "gw": blocks[0]: units: empty`},
		{"unit out of range", "[{units: [256], functions: [read-only]}]", "blocks[0]: units[0]: 256 out of range 0..255"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var blocks []Rules
			if err := yaml.Unmarshal([]byte(c.yaml), &blocks); err != nil {
				t.Fatal(err)
			}
			_, err := CompileBlocks("gw", blocks)
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Fatalf("CompileBlocks = %v, want %q", err, c.err)
			}
		})
	}
	// A unit listed twice within one block is allowed, as Compile allows it.
	if _, err := CompileBlocks("gw", []Rules{{Units: []int{1, 1}, Functions: []string{"read-only"}}}); err != nil {
		t.Errorf("unit twice in one block: %v", err)
	}
}

func TestDescribe(t *testing.T) {
	got := strings.Join(gatewayPolicy(t).Describe(), "\n")
	want := `plc-gw units 1: functions [read-write]; holding-registers read 0-99 write 50-55; limit holding-registers 52: 0..100
plc-gw units 2: functions [read-only]; input-registers read 0-9
plc-gw units 3: functions [diagnostics]`
	if got != want {
		t.Errorf("gateway blocks:\n%s\nwant:\n%s", got, want)
	}
	got = strings.Join(demoPolicy(t).Describe(), "\n")
	want = "units 1: functions [read-write diagnostics]; coils read 0-15 write 0; discrete-inputs read 0-15; holding-registers read 0-99 write 50-56; input-registers read 0-9; limit holding-registers 52: 0..100; limit holding-registers 54-55: -10..10 signed"
	if got != want {
		t.Errorf("single block:\n%s\nwant:\n%s", got, want)
	}
}
