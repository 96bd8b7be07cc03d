package policy

import (
	"os"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // the appliance has no zoneinfo files; tests must not depend on the host's

	"github.com/otgate/otgate/site"
)

// now is the validation clock for test sites.
var now = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

const baseSite = `site: test
zones:
  - {name: cell-1, owner: ot, mode: enforce, interface: eth1, subnet: 10.77.0.0/24, gate_address: 10.77.0.1}
  - {name: cell-2, owner: ot, mode: enforce, interface: eth1, vlan: 2, subnet: 10.78.0.0/24, gate_address: 10.78.0.1}
assets:
  - {name: plc-tank, zone: cell-1, address: 10.77.0.20, services: [{protocol: modbus}]}
  - {name: hmi-1, zone: cell-1, address: 10.77.0.30, services: [{protocol: https}, {protocol: modbus}]}
  - {name: plc-2, zone: cell-2, address: 10.78.0.20, services: [{protocol: modbus}, {protocol: s7}]}
roles:
  - {name: engineer}
  - {name: vendor}
users:
  - {name: alice, roles: [engineer]}
  - {name: bob, roles: [vendor], source_networks: [192.0.2.0/24, "2001:db8::/32"]}
  - {name: dave, roles: [engineer], disabled: true}
`

const rulesRO = `
    modbus: {units: [1], functions: [read-only], holding-registers: {read: ["0-99"]}}`

// compileYAML parses base + extra (more sections) and compiles it.
func compileYAML(t testing.TB, extra string) *Policy {
	t.Helper()
	s, err := site.Parse("test.yaml", []byte(baseSite+extra), site.Options{Now: now})
	if err != nil {
		t.Fatalf("site:\n%s\n%v", numbered(baseSite+extra), err)
	}
	p, err := Compile(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func numbered(s string) string {
	lines := strings.Split(s, "\n")
	for i := range lines {
		lines[i] = strings.Repeat(" ", 3-len(itoa(i+1))) + itoa(i+1) + " " + lines[i]
	}
	return strings.Join(lines, "\n")
}

func itoa(i int) string {
	b := []byte{}
	for {
		b = append([]byte{byte('0' + i%10)}, b...)
		i /= 10
		if i == 0 {
			return string(b)
		}
	}
}

func at(t testing.TB, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func readFile(path string) ([]byte, error) { return os.ReadFile(path) }
