package sitespec

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/otgate/otgate/services/segment/ruleset"
	"github.com/otgate/otgate/site"
)

var now = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)

// gate is the baseline of a board with eth0 up and eth1, eth2 down.
var gate = ruleset.BaselineSpec{
	Uplink: "eth0", Downlinks: []string{"eth1", "eth2"}, ListenPorts: []uint16{8443}, DHCPClient: true,
	Proxy: ruleset.ProxyIdentity{UID: 101, Mark: 0x6f74},
}

func load(t *testing.T, path string) *site.Site {
	t.Helper()
	s, _, err := site.Load(path, site.Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func parse(t *testing.T, yaml string) *site.Site {
	t.Helper()
	s, err := site.Parse("test.yaml", []byte(yaml), site.Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestDemoPlant(t *testing.T) {
	spec, err := Spec(load(t, "../../../site/testdata/example-site.yaml"), gate)
	if err != nil {
		t.Fatal(err)
	}
	want := []ruleset.Asset{
		{Name: "plc-tank", Zone: "cell-1", Mode: ruleset.ModeEnforce, Address: "10.77.0.20", TCPPorts: []uint16{502}},
		{Name: "hmi-1", Zone: "cell-1", Mode: ruleset.ModeEnforce, Address: "10.77.0.30", TCPPorts: []uint16{443, 5900}},
	}
	if !reflect.DeepEqual(spec.Assets, want) {
		t.Errorf("assets\n got %+v\nwant %+v", spec.Assets, want)
	}
	if !reflect.DeepEqual(spec.BaselineSpec, gate) || len(spec.Exceptions) != 0 {
		t.Errorf("baseline %+v, exceptions %+v", spec.BaselineSpec, spec.Exceptions)
	}
	// eth2 carries no zone: enforced all the same (fail closed).
	if want := []string{"eth1", "eth2"}; !reflect.DeepEqual(spec.EnforceInterfaces, want) {
		t.Errorf("enforce interfaces %v, want %v", spec.EnforceInterfaces, want)
	}
}

// VLAN zones add their sub-interfaces as downlinks; monitor zones keep
// their mode; pinned overlay addresses become endpoints; exceptions keep
// owner and expiry.
func TestPlantWithVLANsMonitorAndExceptions(t *testing.T) {
	spec, err := Spec(load(t, "../../../site/testdata/plant.yaml"), gate)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"eth1", "eth2", "eth1.101", "eth1.102"}; !reflect.DeepEqual(spec.Downlinks, want) {
		t.Errorf("downlinks %v, want %v", spec.Downlinks, want)
	}
	// cell-1 (enforce) on eth1.101, utilities (enforce) on eth2, and eth1
	// untagged, which carries no zone; cell-2 (monitor, eth1.102) is not
	// one.
	if want := []string{"eth1", "eth2", "eth1.101"}; !reflect.DeepEqual(spec.EnforceInterfaces, want) {
		t.Errorf("enforce interfaces %v, want %v", spec.EnforceInterfaces, want)
	}
	byName := map[string]ruleset.Asset{}
	for _, a := range spec.Assets {
		byName[a.Name] = a
	}
	for _, tc := range []struct {
		name, mode, addr, endpoint string
		ports                      []uint16
	}{
		{"plc-1", ruleset.ModeEnforce, "10.10.1.10", "", []uint16{102, 502}},
		{"hmi-1", ruleset.ModeEnforce, "10.10.1.20", "", []uint16{443, 5901}},
		{"plc-2", ruleset.ModeMonitor, "10.10.2.10", "100.64.200.10", []uint16{44818}},
		{"rtu-1", ruleset.ModeEnforce, "10.20.1.5", "", []uint16{9600, 20000}},
	} {
		a := byName[tc.name]
		if a.Mode != tc.mode || a.Address != tc.addr || a.Endpoint != tc.endpoint || !reflect.DeepEqual(a.TCPPorts, tc.ports) {
			t.Errorf("%s: %+v, want mode %s address %s endpoint %q ports %v", tc.name, a, tc.mode, tc.addr, tc.endpoint, tc.ports)
		}
	}
	want := []ruleset.Exception{
		{ID: "1-hmi-1-to-plc-2-44818", From: "10.10.1.20", To: "10.10.2.10", Protocol: "tcp", Port: 44818,
			Owner: "ot-team@plant.example", Expires: time.Date(2027, 1, 15, 0, 0, 0, 0, time.UTC)},
		{ID: "2-10.10.1.50-to-rtu-1-20000", From: "10.10.1.50", To: "10.20.1.5", Protocol: "tcp", Port: 20000,
			Owner: "facilities@plant.example", Expires: time.Date(2027, 2, 1, 11, 0, 0, 0, time.UTC)},
	}
	if len(spec.Exceptions) != len(want) {
		t.Fatalf("exceptions %+v", spec.Exceptions)
	}
	for i := range want {
		g := spec.Exceptions[i]
		if g.ID != want[i].ID || g.From != want[i].From || g.To != want[i].To || g.Protocol != want[i].Protocol ||
			g.Port != want[i].Port || g.Owner != want[i].Owner || !g.Expires.Equal(want[i].Expires) {
			t.Errorf("exception %d\n got %+v\nwant %+v", i, g, want[i])
		}
	}
}

func TestErrors(t *testing.T) {
	const zoneOn = `
site: s
zones:
  - name: z
    owner: o@example.com
    mode: enforce
    interface: IFACE
    subnet: 10.1.0.0/24
    gate_address: 10.1.0.1
assets:
  - name: a
    zone: z
    address: 10.1.0.5
    services: [{protocol: modbus}]
`
	for _, tc := range []struct {
		name string
		site string
		base ruleset.BaselineSpec
		want string
	}{
		{"zone on the uplink", strings.ReplaceAll(zoneOn, "IFACE", "eth0"), gate,
			`zone "z": interface eth0 is not an OT downlink of this gate (downlinks: eth1, eth2)`},
		{"zone on an unknown interface", strings.ReplaceAll(zoneOn, "IFACE", "eth7"), gate,
			`zone "z": interface eth7 is not an OT downlink of this gate`},
		{"baseline without proxy uid", strings.ReplaceAll(zoneOn, "IFACE", "eth1"),
			ruleset.BaselineSpec{Uplink: "eth0", Downlinks: []string{"eth1"}},
			"proxy.uid: 0 (root)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec, err := Spec(parse(t, tc.site), tc.base)
			if spec != nil || !errors.Is(err, ErrSite) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Spec: %v, %v; want an ErrSite error containing %q", spec, err, tc.want)
			}
		})
	}
}

func TestZoneWithoutAssetsIsBaselineOnly(t *testing.T) {
	s := parse(t, `
site: s
zones:
  - name: z
    owner: o@example.com
    mode: monitor
    interface: eth2
    subnet: 10.1.0.0/24
    gate_address: 10.1.0.1
`)
	spec, err := Spec(s, gate)
	if err != nil {
		t.Fatal(err)
	}
	if len(spec.Assets) != 0 || len(spec.Exceptions) != 0 {
		t.Fatalf("spec %+v", spec)
	}
}

// An interface that carries an enforce zone is listed once in
// EnforceInterfaces, also when a monitor zone shares it (fail closed); an
// interface with only monitor zones is not; one with no zone is.
func TestEnforceInterfaces(t *testing.T) {
	s := parse(t, `
site: s
zones:
  - name: a
    owner: o@example.com
    mode: enforce
    interface: eth1
    subnet: 10.1.0.0/24
    gate_address: 10.1.0.1
  - name: b
    owner: o@example.com
    mode: monitor
    interface: eth1
    subnet: 10.2.0.0/24
    gate_address: 10.2.0.1
  - name: c
    owner: o@example.com
    mode: enforce
    interface: eth1
    subnet: 10.3.0.0/24
    gate_address: 10.3.0.1
  - name: d
    owner: o@example.com
    mode: monitor
    interface: eth2
    subnet: 10.4.0.0/24
    gate_address: 10.4.0.1
  - name: e
    owner: o@example.com
    mode: enforce
    interface: eth2
    vlan: 7
    subnet: 10.5.0.0/24
    gate_address: 10.5.0.1
`)
	spec, err := Spec(s, gate)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"eth1", "eth2.7"}; !reflect.DeepEqual(spec.EnforceInterfaces, want) {
		t.Errorf("enforce interfaces %v, want %v", spec.EnforceInterfaces, want)
	}
}
