package netconf

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/otgate/otgate/site"
)

func zone(name, ifname string, vlan int, subnet string) site.Zone {
	return site.Zone{Name: name, Interface: ifname, VLAN: vlan, Subnet: netip.MustParsePrefix(subnet)}
}

func pfx(s string) []netip.Prefix { return []netip.Prefix{netip.MustParsePrefix(s)} }

func TestMakePlan(t *testing.T) {
	zones := []site.Zone{
		zone("cell-1", "eth1", 0, "10.77.0.0/24"),
		zone("cell-2", "eth1", 100, "10.77.1.0/24"),
		zone("cell-3", "eth2", 200, "10.77.2.0/24"),
	}
	addrs := Addresses{"eth1": pfx("10.77.0.1/24"), "eth1.100": pfx("10.77.1.1/24")}
	p, err := MakePlan("eth0", []string{"eth1", "eth2"}, addrs, zones)
	if err != nil {
		t.Fatal(err)
	}
	want := []LinkPlan{
		{Name: "eth1", Addresses: pfx("10.77.0.1/24"), Zones: []string{"cell-1"}},
		{Name: "eth2"},
		{Name: "eth1.100", Parent: "eth1", VLAN: 100, Addresses: pfx("10.77.1.1/24"), Zones: []string{"cell-2"}},
		{Name: "eth2.200", Parent: "eth2", VLAN: 200, Zones: []string{"cell-3"}},
	}
	if len(p.Links) != len(want) {
		t.Fatalf("links %+v", p.Links)
	}
	for i := range want {
		g := p.Links[i]
		if len(g.Addresses) == 0 {
			g.Addresses = nil
		}
		if !reflect.DeepEqual(g, want[i]) {
			t.Errorf("link %d: %+v, want %+v", i, g, want[i])
		}
	}
	if len(p.Warnings) != 1 || !strings.Contains(p.Warnings[0], `zone "cell-3" on eth2.200: no gate address in 10.77.2.0/24 (the applied policy names none: re-apply the site file with the zone's gate_address)`) {
		t.Errorf("warnings %q", p.Warnings)
	}
}

func TestMakePlanErrors(t *testing.T) {
	for _, c := range []struct {
		name      string
		downlinks []string
		addrs     Addresses
		zones     []site.Zone
		want      string
	}{
		{"zone on the uplink", []string{"eth1"}, nil, []site.Zone{zone("z", "eth0", 0, "10.1.0.0/24")}, `zone "z": interface eth0 is the uplink`},
		{"zone on an unknown interface", []string{"eth1"}, nil, []site.Zone{zone("z", "eth7", 0, "10.1.0.0/24")}, `zone "z": interface eth7 is not a downlink of this gate (downlinks: eth1)`},
		{"uplink as downlink", []string{"eth0"}, nil, nil, "eth0 is both the uplink and a downlink"},
		{"downlink twice", []string{"eth1", "eth1"}, nil, nil, "downlink eth1 listed twice"},
		{"address outside its zone", []string{"eth1"}, Addresses{"eth1": pfx("10.2.0.1/24")}, []site.Zone{zone("z", "eth1", 0, "10.1.0.0/24")},
			"gate address 10.2.0.1/24 on eth1 is in no zone subnet of that interface (zones: z 10.1.0.0/24)"},
		{"address on nothing", []string{"eth1"}, Addresses{"eth2.5": pfx("10.2.0.1/24")}, []site.Zone{zone("z", "eth1", 0, "10.1.0.0/24")},
			"address for eth2.5: not a downlink (eth1) nor the VLAN interface of a zone"},
		{"address on a bad VLAN name", []string{"eth1"}, Addresses{"eth1.4095": pfx("10.2.0.1/24")}, []site.Zone{zone("z", "eth1", 0, "10.1.0.0/24")},
			"address for eth1.4095: not a downlink (eth1) nor the VLAN interface of a zone"},
		{"overlapping addresses", []string{"eth1", "eth2"}, Addresses{"eth1": pfx("10.1.0.1/24"), "eth2": pfx("10.1.0.2/16")}, nil,
			"gate address 10.1.0.2/16 on eth2 overlaps 10.1.0.1/24 on eth1"},
		{"VLAN name too long", []string{"enp0s31f6abcd"}, nil, []site.Zone{zone("z", "enp0s31f6abcd", 4000, "10.1.0.0/24")}, `zone "z": VLAN 4000 on enp0s31f6abcd: bad interface name`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := MakePlan("eth0", c.downlinks, c.addrs, c.zones)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("got %v, want %q", err, c.want)
			}
		})
	}
}

func TestParseDownlink(t *testing.T) {
	d, err := ParseDownlink("eth1=10.77.0.1/24")
	if err != nil || d.Name != "eth1" || d.Address != netip.MustParsePrefix("10.77.0.1/24") {
		t.Errorf("%+v %v", d, err)
	}
	if d, err := ParseDownlink("eth2"); err != nil || d.Address.IsValid() {
		t.Errorf("%+v %v", d, err)
	}
	// A /31 (RFC 3021) and a /32 have no network or broadcast address.
	for _, in := range []string{"eth1=10.77.0.0/31", "eth1=10.77.0.1/31", "eth1=10.77.0.0/32"} {
		if _, err := ParseDownlink(in); err != nil {
			t.Errorf("%q: %v", in, err)
		}
	}
	for in, want := range map[string]string{
		"":                    "bad interface name",
		"a-very-long-name-x":  "bad interface name",
		"eth1=10.77.0.255/24": "network or broadcast",
		"eth1=10.77.0.0/24":   `address "10.77.0.0/24" is the network or broadcast address of 10.77.0.0/24`,
		"eth1=10.77.0.7/30":   `address "10.77.0.7/30" is the network or broadcast address of 10.77.0.4/30`,
		"eth1=10.77.0.1":      "bad address",
		"eth1=10.77.0.1/4":    "prefix length 4 out of range",
	} {
		if _, err := ParseDownlink(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", in, err, want)
		}
	}
}

// A gate address for a VLAN of a downlink that no zone names yet waits
// (a warning), and nothing is created for it.
func TestMakePlanAddressWaitsForVLANZone(t *testing.T) {
	addrs := Addresses{"eth1": pfx("10.77.0.1/24"), "eth1.100": pfx("10.77.100.1/24")}
	p, err := MakePlan("eth0", []string{"eth1"}, addrs, []site.Zone{zone("cell-1", "eth1", 0, "10.77.0.0/24")})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := p.Link("eth1.100"); ok || len(p.Links) != 1 {
		t.Errorf("links %+v; want eth1 only", p.Links)
	}
	if len(p.Warnings) != 1 || p.Warnings[0] != "address for eth1.100 waits for a zone naming that VLAN interface" {
		t.Errorf("warnings %q", p.Warnings)
	}
}
