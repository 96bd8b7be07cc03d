package site

import (
	"bytes"
	"errors"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// now is the clock every test validates against.
var now = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseValidPlant(t *testing.T) {
	s, err := Parse("plant.yaml", readTestdata(t, "plant.yaml"), Options{Now: now})
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if s.Name != "plant-north" || len(s.Zones) != 3 || len(s.Assets) != 4 || len(s.Exceptions) != 2 {
		t.Fatalf("unexpected shape: %+v", s)
	}
	if z := s.Zones[1]; z.Mode != ModeMonitor || z.VLAN != 102 || z.Interface != "eth1" || z.Subnet != netip.MustParsePrefix("10.10.2.0/24") {
		t.Errorf("zone cell-2 = %+v", z)
	}
	plc := s.Assets[0]
	if plc.MAC != "00:1d:9c:c7:b0:70" {
		t.Errorf("MAC not normalised: %q", plc.MAC)
	}
	if want := []Service{{"modbus", 502}, {"s7", 102}}; len(plc.Services) != 2 || plc.Services[0] != want[0] || plc.Services[1] != want[1] {
		t.Errorf("plc-1 services = %+v, want %+v (well-known ports filled in)", plc.Services, want)
	}
	if s.Assets[2].Overlay != netip.MustParseAddr("100.64.200.10") {
		t.Errorf("pinned overlay = %v", s.Assets[2].Overlay)
	}
	o := s.Overlay
	if o.Gate != netip.MustParseAddr("100.64.0.1") || o.Quarantine != 168*time.Hour || o.PoolSize != 256 {
		t.Errorf("overlay = %+v", o)
	}
	if len(o.Pools) != 2 || o.Pools[0].Zone != "cell-2" || o.Pools[1].Size != 1024 {
		t.Errorf("pools not sorted by zone or wrong: %+v", o.Pools)
	}
	e := s.Exceptions[0]
	if e.From.Address != netip.MustParseAddr("10.10.1.20") || e.To.Asset != "plc-2" || e.Port != 44818 {
		t.Errorf("exception 0 = %+v (asset endpoints resolve to their address)", e)
	}
	if !s.Exceptions[1].Expires.Equal(time.Date(2027, 2, 1, 11, 0, 0, 0, time.UTC)) {
		t.Errorf("expiry = %v", s.Exceptions[1].Expires)
	}
	if s.Limits.MaxExceptionLifetime != 90*24*time.Hour {
		t.Errorf("limit = %v", s.Limits.MaxExceptionLifetime)
	}
}

func TestParseDefaults(t *testing.T) {
	s, err := Parse("min.yaml", []byte(`site: tiny
zones:
  - {name: z, owner: o, mode: enforce, interface: eth1, subnet: 10.0.0.0/24, gate_address: 10.0.0.1}
`), Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	o := s.Overlay
	if o.Prefix != DefaultOverlayPrefix || o.Gate != netip.MustParseAddr("100.64.0.1") || o.Quarantine != DefaultQuarantine || o.PoolSize != DefaultPoolSize {
		t.Errorf("overlay defaults = %+v", o)
	}
	if s.Limits.MaxExceptionLifetime != DefaultMaxExceptionLifetime {
		t.Errorf("limit default = %v", s.Limits.MaxExceptionLifetime)
	}
}

// withUplink returns the plant file with an uplink section of body
// appended ("uplink:" on line 82).
func withUplink(t *testing.T, body string) string {
	t.Helper()
	return string(readTestdata(t, "plant.yaml")) + "uplink:\n" + body
}

// The uplink section: DHCP without it or with mode dhcp (the same
// compiled document), static with its settings.
func TestParseUplink(t *testing.T) {
	parse := func(src string) *Site {
		t.Helper()
		s, err := Parse("plant.yaml", []byte(src), Options{Now: now})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	plain := parse(string(readTestdata(t, "plant.yaml")))
	dhcp := parse(withUplink(t, "  mode: dhcp\n"))
	if plain.Uplink != nil || dhcp.Uplink != nil || plain.UplinkSettings().String() != "dhcp" {
		t.Errorf("default uplink %+v, mode dhcp %+v", plain.Uplink, dhcp.Uplink)
	}
	src := readTestdata(t, "plant.yaml")
	a, err := Compile(plain, "plant.yaml", src)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Compile(dhcp, "plant.yaml", src)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Error("mode dhcp compiles differently from no uplink section")
	}

	st := parse(withUplink(t, "  mode: static\n  address: 192.168.10.5/24\n  gateway: 192.168.10.1\n  dns: [192.168.10.53, 192.168.10.54]\n"))
	want := Uplink{Mode: UplinkStatic, Address: netip.MustParsePrefix("192.168.10.5/24"), Gateway: netip.MustParseAddr("192.168.10.1"),
		DNS: []netip.Addr{netip.MustParseAddr("192.168.10.53"), netip.MustParseAddr("192.168.10.54")}}
	if !st.UplinkSettings().Equal(want) || st.UplinkSettings().String() != "static 192.168.10.5/24 via 192.168.10.1, dns 192.168.10.53 192.168.10.54" {
		t.Errorf("static uplink %+v (%s)", st.Uplink, st.Uplink)
	}
	doc, err := Compile(st, "plant.yaml", src)
	if err != nil {
		t.Fatal(err)
	}
	back, err := Decode(doc)
	if err != nil {
		t.Fatal(err)
	}
	if !back.Site.UplinkSettings().Equal(want) {
		t.Errorf("round trip: %+v", back.Site.Uplink)
	}
	again, _ := Compile(&back.Site, "plant.yaml", src)
	if !bytes.Equal(doc, again) {
		t.Error("decode + compile of a static uplink does not reproduce the document")
	}
	// A point-to-point /31 (RFC 3021): both addresses are hosts.
	if u := parse(withUplink(t, "  mode: static\n  address: 192.168.10.6/31\n  gateway: 192.168.10.7\n")).UplinkSettings(); u.String() != "static 192.168.10.6/31 via 192.168.10.7" {
		t.Errorf("/31 static uplink %s", u)
	}
	// No gateway, no DNS: an isolated management network.
	if u := parse(withUplink(t, "  mode: static\n  address: 192.168.10.5/32\n")).UplinkSettings(); u.String() != "static 192.168.10.5/32" {
		t.Errorf("bare static uplink %s", u)
	}
}

// The uplink's ntp list: in either mode, addresses and names in canonical
// form, in the file's order. A DHCP uplink with one compiles to a section
// that is still DHCP (netconf sees no change), and round-trips.
func TestParseUplinkNTP(t *testing.T) {
	parse := func(src string) *Site {
		t.Helper()
		s, err := Parse("plant.yaml", []byte(src), Options{Now: now})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	dhcp := parse(withUplink(t, "  mode: dhcp\n  ntp: [192.168.10.1, NTP.Plant.Example., 192.168.10.2]\n"))
	want := []string{"192.168.10.1", "ntp.plant.example", "192.168.10.2"}
	if dhcp.Uplink == nil || dhcp.Uplink.IsStatic() || !slices.Equal(dhcp.Uplink.NTP, want) {
		t.Fatalf("dhcp uplink with ntp: %+v", dhcp.Uplink)
	}
	if u := dhcp.UplinkSettings(); u.String() != "dhcp" || !u.Equal(Uplink{}) {
		t.Errorf("dhcp uplink with ntp reads as %s, equal to plain dhcp: %v; want dhcp, true", u, u.Equal(Uplink{}))
	}
	src := readTestdata(t, "plant.yaml")
	for _, s := range []*Site{dhcp, parse(withUplink(t, "  mode: static\n  address: 192.168.10.5/24\n  dns: [192.168.10.53]\n  ntp: [192.168.10.1, ntp.plant.example]\n"))} {
		doc, err := Compile(s, "plant.yaml", src)
		if err != nil {
			t.Fatal(err)
		}
		back, err := Decode(doc)
		if err != nil {
			t.Fatal(err)
		}
		if back.Site.Uplink == nil || !slices.Equal(back.Site.Uplink.NTP, s.Uplink.NTP) || back.Site.Uplink.IsStatic() != s.Uplink.IsStatic() {
			t.Errorf("round trip of %+v: %+v", s.Uplink, back.Site.Uplink)
		}
		if again, _ := Compile(&back.Site, "plant.yaml", src); !bytes.Equal(doc, again) {
			t.Error("decode + compile of an uplink with ntp does not reproduce the document")
		}
	}
	// An empty list is no list.
	if s := parse(withUplink(t, "  mode: dhcp\n  ntp: []\n")); s.Uplink != nil {
		t.Errorf("empty ntp list: uplink %+v, want nil (plain dhcp)", s.Uplink)
	}
}

// edit returns the plant file with old replaced by new (exactly once).
func edit(t *testing.T, old, new string) string {
	t.Helper()
	src := string(readTestdata(t, "plant.yaml"))
	if strings.Count(src, old) != 1 {
		t.Fatalf("edit: %q occurs %d times in plant.yaml", old, strings.Count(src, old))
	}
	return strings.Replace(src, old, new, 1)
}

func TestParseErrors(t *testing.T) {
	cases := []struct {
		name string
		src  string
		want []string // every one must appear, each its own error line
	}{
		{"unknown zone", edit(t, "    zone: cell-2\n    address: 10.10.2.10", "    zone: cell-9\n    address: 10.10.2.10"),
			[]string{`plant.yaml:55: assets[2].zone: unknown zone "cell-9" (known: cell-1, cell-2, utilities)`}},
		{"unknown top-level field", edit(t, "site: plant-north", "site: plant-north\ncolour: blue"),
			[]string{`plant.yaml:3: colour: unknown field (known: site, limits, zones, overlay, uplink, assets, exceptions, roles, users, maintenance_windows, grants)`}},
		{"unknown asset field", edit(t, "    mac: 00:1D:9C:C7:B0:70", "    mac: 00:1D:9C:C7:B0:70\n    colour: red"),
			[]string{`plant.yaml:44: assets[0].colour: unknown field`}},
		{"wrong type", edit(t, "    vlan: 101", "    vlan: [101]"),
			[]string{`plant.yaml:12: zones[0].vlan: want an integer, got a list`}},
		{"string for int", edit(t, "    vlan: 101", "    vlan: \"101\""),
			[]string{`plant.yaml:12: zones[0].vlan: want an integer, got str "101"`}},
		{"int with a leading zero (octal to YAML: 0145 would be VLAN 101)", edit(t, "    vlan: 101", "    vlan: 0145"),
			[]string{`plant.yaml:12: zones[0].vlan: 0145 has a leading zero, which YAML reads as octal; write the decimal number without it`}},
		{"port 502 as raw tcp (Modbus past the inspection)", edit(t, "      - protocol: vnc\n        port: 5901", "      - protocol: tcp\n        port: 502"),
			[]string{`plant.yaml:52: assets[1].services[1].protocol: port 502 is Modbus/TCP's; declare it protocol modbus so the gate inspects it (as "tcp" its requests would be relayed uninspected)`}},
		{"int in hex", edit(t, "    vlan: 101", "    vlan: 0x65"),
			[]string{`plant.yaml:12: zones[0].vlan: 0x65 is not a decimal number; write it in decimal`}},
		{"duplicate asset name", edit(t, "  - name: hmi-1", "  - name: plc-1"),
			[]string{`plant.yaml:47: assets[1].name: duplicate asset "plc-1"`}},
		{"duplicate zone name", edit(t, "  - name: cell-2", "  - name: cell-1"),
			[]string{`plant.yaml:15: zones[1].name: duplicate zone "cell-1" (first at line 8)`}},
		{"duplicate underlay address", edit(t, "    address: 10.10.1.20", "    address: 10.10.1.10"),
			[]string{`plant.yaml:49: assets[1].address: duplicate address 10.10.1.10 (also asset "plc-1")`}},
		{"duplicate MAC", edit(t, "    address: 10.10.1.20", "    address: 10.10.1.20\n    mac: 00-1d-9c-c7-b0-70"),
			[]string{`plant.yaml:50: assets[1].mac: duplicate MAC 00:1d:9c:c7:b0:70 (also asset "plc-1")`}},
		{"duplicate pinned overlay", edit(t, "    address: 10.10.1.20", "    address: 10.10.1.20\n    overlay: 100.64.200.10"),
			[]string{`plant.yaml:58: assets[2].overlay: pinned overlay address 100.64.200.10 collides with asset "hmi-1"`}},
		{"overlapping subnets", edit(t, "    subnet: 10.20.0.0/22", "    subnet: 10.10.0.0/16"),
			[]string{`plant.yaml:26: zones[2].subnet: subnet 10.10.0.0/16 overlaps zone "cell-1" subnet 10.10.1.0/24`,
				`zones[2].subnet: subnet 10.10.0.0/16 overlaps zone "cell-2" subnet 10.10.2.0/24`}},
		{"VLAN interface name too long", edit(t, "    interface: eth1\n    vlan: 101", "    interface: enx00e04c680001\n    vlan: 101"),
			[]string{`plant.yaml:12: zones[0].vlan: the VLAN interface "enx00e04c680001.101" would be longer than Linux's 15 characters (interface "enx00e04c680001", VLAN 101): give the interface a shorter name`}},
		{"multicast subnet", edit(t, "    subnet: 10.20.0.0/22", "    subnet: 224.1.0.0/22"),
			[]string{`plant.yaml:26: zones[2].subnet: subnet 224.1.0.0/22 is not unicast address space devices can have (0/8, 127/8, multicast 224/4 and 240/4 are not)`}},
		{"loopback subnet", edit(t, "    subnet: 10.20.0.0/22", "    subnet: 127.20.0.0/22"),
			[]string{`plant.yaml:26: zones[2].subnet: subnet 127.20.0.0/22 is not unicast address space`}},
		{"duplicate VLAN", edit(t, "    vlan: 102", "    vlan: 101"),
			[]string{`plant.yaml:19: zones[1].vlan: duplicate VLAN 101 on interface eth1 (also zone "cell-1")`}},
		{"asset outside subnet", edit(t, "    address: 10.10.1.20", "    address: 10.10.3.20"),
			[]string{`plant.yaml:49: assets[1].address: address 10.10.3.20 is outside zone "cell-1" subnet 10.10.1.0/24`}},
		{"bad MAC", edit(t, "    mac: 00:1D:9C:C7:B0:70", "    mac: 00:1D:9C:C7:B0"),
			[]string{`plant.yaml:43: assets[0].mac: bad MAC address "00:1D:9C:C7:B0"`}},
		{"bad IP", edit(t, "    address: 10.10.1.20", "    address: 10.10.1.256"),
			[]string{`plant.yaml:49: assets[1].address: bad IPv4 address "10.10.1.256"`}},
		{"IPv6 address", edit(t, "    address: 10.10.1.20", "    address: fe80::1"),
			[]string{`assets[1].address: bad IPv4 address "fe80::1"`}},
		{"bad CIDR", edit(t, "    subnet: 10.10.1.0/24", "    subnet: 10.10.1.0/33"),
			[]string{`plant.yaml:13: zones[0].subnet: bad IPv4 CIDR "10.10.1.0/33"`}},
		{"host bits", edit(t, "    subnet: 10.10.1.0/24", "    subnet: 10.10.1.7/24"),
			[]string{`zones[0].subnet: CIDR "10.10.1.7/24" has host bits set (did you mean 10.10.1.0/24?)`}},
		{"bad port", edit(t, "        port: 5901", "        port: 70000"),
			[]string{`plant.yaml:53: assets[1].services[1].port: 70000 is out of range 1..65535`}},
		{"bad protocol", edit(t, "      - protocol: s7", "      - protocol: profinet"),
			[]string{`plant.yaml:46: assets[0].services[1].protocol: unknown protocol "profinet" (known: dnp3, enip,`}},
		{"tcp without port", edit(t, "      - protocol: tcp\n        port: 9600", "      - protocol: tcp"),
			[]string{`plant.yaml:65: assets[3].services[1].port: missing (required for protocol "tcp")`}},
		{"bad mode", edit(t, "    mode: monitor", "    mode: audit"),
			[]string{`plant.yaml:17: zones[1].mode: unknown mode "audit" (want monitor or enforce)`}},
		{"pinned outside prefix", edit(t, "    overlay: 100.64.200.10", "    overlay: 100.65.0.10"),
			[]string{`plant.yaml:57: assets[2].overlay: pinned overlay address 100.65.0.10 is outside the overlay prefix 100.64.0.0/16`}},
		{"pinned on gate", edit(t, "    overlay: 100.64.200.10", "    overlay: 100.64.0.1"),
			[]string{`assets[2].overlay: pinned overlay address 100.64.0.1 is the gate's own overlay address`}},
		{"exception missing owner, justification, expiry", edit(t, "    owner: facilities@plant.example\n    justification: historian collector\n    expires: \"2027-02-01T12:00:00+01:00\"\n", ""),
			[]string{`plant.yaml:76: exceptions[1].owner: missing (required)`, `plant.yaml:76: exceptions[1].justification: missing (required)`, `plant.yaml:76: exceptions[1].expires: missing (required)`}},
		{"exception expired", edit(t, "    expires: 2027-01-15T00:00:00Z", "    expires: 2026-11-15T00:00:00Z"),
			[]string{`plant.yaml:75: exceptions[0].expires: expired at 2026-11-15T00:00:00Z (now 2026-12-01T00:00:00Z)`}},
		{"exception too long", edit(t, "    expires: 2027-01-15T00:00:00Z", "    expires: 2027-06-15T00:00:00Z"),
			[]string{`plant.yaml:75: exceptions[0].expires: expiry 2027-06-15T00:00:00Z is more than the maximum exception lifetime (2160h0m0s) from now; limit: 2027-03-01T00:00:00Z`}},
		{"exception shorter limit", edit(t, "  max_exception_lifetime: 90d", "  max_exception_lifetime: 7d"),
			[]string{`exceptions[0].expires: expiry 2027-01-15T00:00:00Z is more than the maximum exception lifetime (168h0m0s)`, `exceptions[1].expires: expiry`}},
		{"exception unknown asset", edit(t, "    to: plc-2", "    to: plc-9"),
			[]string{`plant.yaml:70: exceptions[0].to: unknown asset "plc-9"`}},
		{"exception address in no zone", edit(t, "  - from: 10.10.1.50", "  - from: 192.168.7.7"),
			[]string{`plant.yaml:76: exceptions[1].from: address 192.168.7.7 is in no zone's subnet`}},
		{"bad expiry format", edit(t, "    expires: 2027-01-15T00:00:00Z", "    expires: next tuesday"),
			[]string{`plant.yaml:75: exceptions[0].expires: bad time "next tuesday" (want RFC 3339`}},
		{"overlay overlaps a zone", edit(t, "  prefix: 100.64.0.0/16", "  prefix: 10.0.0.0/8"),
			[]string{`overlay.prefix: overlay prefix 10.0.0.0/8 overlaps zone "cell-1" subnet 10.10.1.0/24`}},
		{"quarantine over 100 years", edit(t, "  quarantine: 168h", "  quarantine: 2500000h"),
			[]string{`plant.yaml:31: overlay.quarantine: duration "2500000h" is longer than 100 years (36500d)`}},
		{"pool for unknown zone", edit(t, "    utilities:\n", "    boiler:\n"),
			[]string{`plant.yaml:34: overlay.pools.boiler: unknown zone "boiler"`}},
		{"pool size not power of two", edit(t, "      size: 1024", "      size: 1000"),
			[]string{`plant.yaml:35: overlay.pools.utilities.size: pool size 1000 is not a power of two`}},
		{"pool outside prefix", edit(t, "      prefix: 100.64.200.0/24", "      prefix: 100.99.200.0/24"),
			[]string{`overlay.pools.cell-2.prefix: pool 100.99.200.0/24 is outside the overlay prefix 100.64.0.0/16`}},
		{"duplicate key", edit(t, "    address: 10.10.1.20", "    address: 10.10.1.20\n    address: 10.10.1.21"),
			[]string{`plant.yaml:50: assets[1].address: duplicate field (first on line 49)`}},
		{"alias", edit(t, "  - name: cell-1\n", "  - &z name: cell-1\n"),
			[]string{`anchors and aliases are not allowed`}},
		{"bad name", edit(t, "  - name: rtu-1", "  - name: RTU 1"),
			[]string{`plant.yaml:60: assets[3].name: bad name "RTU 1"`}},
		{"gate address missing", edit(t, "    gate_address: 10.10.2.1\n", ""),
			[]string{`plant.yaml:15: zones[1].gate_address: missing (required)`}},
		{"gate address not an address", edit(t, "    gate_address: 10.10.1.1", "    gate_address: 10.10.1.0/24"),
			[]string{`plant.yaml:14: zones[0].gate_address: bad IPv4 address "10.10.1.0/24"`}},
		{"gate address outside the subnet", edit(t, "    gate_address: 10.10.1.1", "    gate_address: 10.10.9.1"),
			[]string{`plant.yaml:14: zones[0].gate_address: gate address 10.10.9.1 is outside the zone's subnet 10.10.1.0/24`}},
		{"gate address is the network address", edit(t, "    gate_address: 10.10.1.1", "    gate_address: 10.10.1.0"),
			[]string{`plant.yaml:14: zones[0].gate_address: gate address 10.10.1.0 is the network or broadcast address of the zone's subnet 10.10.1.0/24`}},
		{"gate address is the broadcast address", edit(t, "    gate_address: 10.20.0.1", "    gate_address: 10.20.3.255"),
			[]string{`plant.yaml:27: zones[2].gate_address: gate address 10.20.3.255 is the network or broadcast address of the zone's subnet 10.20.0.0/22`}},
		{"asset is the broadcast address", edit(t, "    address: 10.20.1.5", "    address: 10.20.3.255"),
			[]string{`plant.yaml:62: assets[3].address: address 10.20.3.255 is the network or broadcast address of zone "utilities" subnet 10.20.0.0/22`}},
		{"pinned overlay is the broadcast address", edit(t, "    overlay: 100.64.200.10", "    overlay: 100.64.255.255"),
			[]string{`plant.yaml:57: assets[2].overlay: pinned overlay address 100.64.255.255 is the network or broadcast address of the overlay prefix 100.64.0.0/16`}},
		{"overlay gate is the network address", edit(t, "  prefix: 100.64.0.0/16", "  prefix: 100.64.0.0/16\n  gate: 100.64.0.0"),
			[]string{`plant.yaml:31: overlay.gate: gate address 100.64.0.0 is the network or broadcast address of the overlay prefix 100.64.0.0/16`}},
		{"gate address of two zones", edit(t, "    gate_address: 10.10.2.1", "    gate_address: 10.10.1.1"),
			[]string{`plant.yaml:21: zones[1].gate_address: gate address 10.10.1.1 is also zone "cell-1"'s (line 14); each zone needs its own`}},
		{"gate address is an asset's", edit(t, "    gate_address: 10.10.1.1", "    gate_address: 10.10.1.20"),
			[]string{`plant.yaml:49: assets[1].address: address 10.10.1.20 is the gate's own address in zone "cell-1" (zones[0].gate_address, line 14)`}},
		{"gate address is an overlay address", edit(t, "  prefix: 100.64.0.0/16", "  prefix: 10.10.0.0/16"),
			[]string{`plant.yaml:14: zones[0].gate_address: gate address 10.10.1.1 is an overlay address (overlay prefix 10.10.0.0/16)`}},
		{"exception to the gate's address", edit(t, "  - from: 10.10.1.50", "  - from: 10.10.1.1"),
			[]string{`plant.yaml:76: exceptions[1].from: address 10.10.1.1 is the gate's own address in zone "cell-1" (zones[0].gate_address)`}},
		{"duplicate exception", string(readTestdata(t, "plant.yaml")) + `  - from: 10.10.1.20
    to: plc-2
    protocol: enip
    port: 44818
    owner: someone@plant.example
    justification: the same flow again
    expires: 2027-01-10T00:00:00Z
`, []string{`plant.yaml:82: exceptions[2]: duplicate exception: 10.10.1.20 to plc-2, enip port 44818 is also exceptions[0] (line 69)`}},
		// The uplink section, appended to the plant at line 82.
		{"uplink unknown field", withUplink(t, "  mode: static\n  address: 192.168.10.5/24\n  mtu: 1500\n"),
			[]string{`plant.yaml:85: uplink.mtu: unknown field (known: mode, address, gateway, dns, ntp, nts)`}},
		{"uplink without mode", withUplink(t, "  address: 192.168.10.5/24\n"),
			[]string{`plant.yaml:83: uplink.mode: missing (required)`}},
		{"uplink bad mode", withUplink(t, "  mode: pppoe\n"),
			[]string{`plant.yaml:83: uplink.mode: unknown mode "pppoe" (want dhcp or static)`}},
		{"uplink static without address", withUplink(t, "  mode: static\n  gateway: 192.168.10.1\n"),
			[]string{`plant.yaml:83: uplink.address: missing (required with mode static)`}},
		{"uplink address without length", withUplink(t, "  mode: static\n  address: 192.168.10.5\n"),
			[]string{`plant.yaml:84: uplink.address: bad IPv4 address with prefix length "192.168.10.5" (want e.g. 192.168.10.5/24)`}},
		{"uplink address is the network", withUplink(t, "  mode: static\n  address: 192.168.10.0/24\n"),
			[]string{`plant.yaml:84: uplink.address: 192.168.10.0 is the network or broadcast address of 192.168.10.0/24 (want the gate's own address, e.g. 192.168.10.1/24)`}},
		{"uplink address is the broadcast of a /30", withUplink(t, "  mode: static\n  address: 192.168.10.7/30\n"),
			[]string{`plant.yaml:84: uplink.address: 192.168.10.7 is the network or broadcast address of 192.168.10.4/30 (want the gate's own address, e.g. 192.168.10.5/30)`}},
		{"uplink gateway is the broadcast address", withUplink(t, "  mode: static\n  address: 192.168.10.5/24\n  gateway: 192.168.10.255\n"),
			[]string{`plant.yaml:85: uplink.gateway: gateway 192.168.10.255 is the network or broadcast address of the uplink's subnet 192.168.10.0/24`}},
		{"uplink gateway outside the subnet", withUplink(t, "  mode: static\n  address: 192.168.10.5/24\n  gateway: 192.168.11.1\n"),
			[]string{`plant.yaml:85: uplink.gateway: gateway 192.168.11.1 is outside the uplink's subnet 192.168.10.0/24`}},
		{"uplink gateway is the address", withUplink(t, "  mode: static\n  address: 192.168.10.5/24\n  gateway: 192.168.10.5\n"),
			[]string{`plant.yaml:85: uplink.gateway: gateway 192.168.10.5 is the uplink's own address`}},
		{"uplink overlaps a zone", withUplink(t, "  mode: static\n  address: 10.10.0.5/16\n"),
			[]string{`plant.yaml:84: uplink.address: uplink subnet 10.10.0.0/16 overlaps zone "cell-1" subnet 10.10.1.0/24 (at zones[0])`,
				`plant.yaml:84: uplink.address: uplink subnet 10.10.0.0/16 overlaps zone "cell-2" subnet 10.10.2.0/24 (at zones[1])`}},
		{"uplink overlaps the overlay", withUplink(t, "  mode: static\n  address: 100.64.3.5/24\n"),
			[]string{`plant.yaml:84: uplink.address: uplink subnet 100.64.3.0/24 overlaps the overlay prefix 100.64.0.0/16`}},
		{"uplink dhcp with static fields", withUplink(t, "  mode: dhcp\n  address: 192.168.10.5/24\n  gateway: 192.168.10.1\n  dns: [192.168.10.53]\n"),
			[]string{`plant.yaml:84: uplink.address: only with mode static (mode dhcp takes it from the lease)`,
				`plant.yaml:85: uplink.gateway: only with mode static`, `plant.yaml:86: uplink.dns: only with mode static`}},
		{"uplink bad DNS", withUplink(t, "  mode: static\n  address: 192.168.10.5/24\n  dns:\n    - 192.168.10.53\n    - dns.plant.example\n    - 192.168.10.53\n"),
			[]string{`plant.yaml:87: uplink.dns[1]: bad IPv4 address "dns.plant.example"`,
				`plant.yaml:88: uplink.dns[2]: duplicate DNS server 192.168.10.53 (also uplink.dns[0])`}},
		{"uplink ntp bad entries", withUplink(t, "  mode: dhcp\n  ntp:\n    - 192.168.10.1\n    - ntp.plant.example:123\n    - 224.0.1.1\n    - 127.0.0.1\n    - \"2001:db8::1\"\n    - 192.168.10.01\n    - 192.168.10.1\n    - -bad-.example\n"),
			[]string{`plant.yaml:86: uplink.ntp[1]: bad NTP server "ntp.plant.example:123" (want an IPv4 address or a DNS name, no port)`,
				`plant.yaml:87: uplink.ntp[2]: 224.0.1.1 is not a unicast address a time server can have`,
				`plant.yaml:88: uplink.ntp[3]: 127.0.0.1 is not a unicast address a time server can have`,
				`plant.yaml:89: uplink.ntp[4]: "2001:db8::1" is not an IPv4 address (the uplink is IPv4)`,
				`plant.yaml:90: uplink.ntp[5]: bad NTP server "192.168.10.01"`,
				`plant.yaml:91: uplink.ntp[6]: duplicate NTP server 192.168.10.1 (also uplink.ntp[0])`,
				`plant.yaml:92: uplink.ntp[7]: bad NTP server "-bad-.example"`}},
		{"uplink ntp too many", withUplink(t, "  mode: dhcp\n  ntp: [10.0.0.1, 10.0.0.2, 10.0.0.3, 10.0.0.4, 10.0.0.5, 10.0.0.6, 10.0.0.7, 10.0.0.8, 10.0.0.9]\n"),
			[]string{`plant.yaml:84: uplink.ntp: 9 servers; at most 8`}},
		{"uplink ntp not a list", withUplink(t, "  mode: dhcp\n  ntp: 192.168.10.1\n"),
			[]string{`plant.yaml:84: uplink.ntp: want a list, got str "192.168.10.1"`}},
		{"uplink ntp on the OT side", withUplink(t, "  mode: dhcp\n  ntp: [10.10.1.50, 100.64.0.9]\n"),
			[]string{`plant.yaml:84: uplink.ntp[0]: NTP server 10.10.1.50 is in zone "cell-1" subnet 10.10.1.0/24 (at zones[0]); the gate takes its time from the uplink side only`,
				`plant.yaml:84: uplink.ntp[1]: NTP server 100.64.0.9 is in the overlay prefix 100.64.0.0/16`}},
		{"uplink ntp name without dns", withUplink(t, "  mode: static\n  address: 192.168.10.5/24\n  ntp: [ntp.plant.example, 192.168.10.5]\n"),
			[]string{`plant.yaml:85: uplink.ntp[0]: NTP server ntp.plant.example is a DNS name, but the static uplink has no dns servers to resolve it (add uplink.dns or give an address)`,
				`plant.yaml:85: uplink.ntp[1]: NTP server 192.168.10.5 is the uplink's own address`}},
		{"uplink ntp without mode", withUplink(t, "  ntp: [192.168.10.1]\n"),
			[]string{`plant.yaml:83: uplink.mode: missing (required)`}},
		{"uplink not a mapping", withUplink(t, "  - dhcp\n"),
			[]string{`plant.yaml:83: uplink: want a mapping, got a list`}},
		{"syntax error", "site: x\nzones: [\n", []string{`plant.yaml:`, `bad YAML`}},
		{"two documents", "site: x\n---\nsite: y\n", []string{`more than one YAML document`}},
		{"empty file", "", []string{`plant.yaml: empty site file`}},
		{"not a mapping", "- a\n- b\n", []string{`plant.yaml:1: want a mapping, got a list`}},
		{"missing sections", "limits: {}\n", []string{`plant.yaml:1: site: missing (required)`, `plant.yaml:1: zones: missing (required)`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Parse("plant.yaml", []byte(tc.src), Options{Now: now})
			if err == nil {
				t.Fatalf("Parse accepted a bad file: %+v", s)
			}
			if s != nil {
				t.Errorf("Parse returned a Site alongside an error: nothing may be applied")
			}
			var list ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("error is %T, want ErrorList", err)
			}
			msg := err.Error()
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error does not contain\n  %s\ngot:\n  %s", w, strings.ReplaceAll(msg, "\n", "\n  "))
				}
			}
		})
	}
}

// TestParseCollectsAllErrors checks that several problems in one file are
// all reported, in line order, not just the first.
func TestParseCollectsAllErrors(t *testing.T) {
	src := edit(t, "    vlan: 102", "    vlan: 101")
	src = strings.Replace(src, "    zone: cell-2\n    address: 10.10.2.10", "    zone: cell-9\n    address: 10.10.2.10", 1)
	src = strings.Replace(src, "    expires: 2027-01-15T00:00:00Z", "    expires: 2020-01-01T00:00:00Z", 1)
	src = strings.Replace(src, "    mac: 00:1D:9C:C7:B0:70", "    mac: nope", 1)
	_, err := Parse("plant.yaml", []byte(src), Options{Now: now})
	var list ErrorList
	if !errors.As(err, &list) {
		t.Fatalf("err = %v", err)
	}
	if len(list) != 4 {
		t.Fatalf("got %d errors, want 4:\n%v", len(list), err)
	}
	for i := 1; i < len(list); i++ {
		if list[i].Line < list[i-1].Line {
			t.Errorf("errors not in line order:\n%v", err)
		}
	}
}
