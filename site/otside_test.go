package site

import (
	"net/netip"
	"strings"
	"testing"
)

// OTSide names the zone subnet or overlay prefix an address is in, the
// default overlay prefix standing in when the site names none (and for
// no site at all).
func TestOTSide(t *testing.T) {
	st := &Site{
		Zones: []Zone{{Name: "cell-1", Subnet: netip.MustParsePrefix("10.77.0.0/24")},
			{Name: "no-subnet"}},
		Overlay: Overlay{Prefix: netip.MustParsePrefix("100.80.0.0/16")},
	}
	for _, c := range []struct {
		s    *Site
		addr string
		want string // "": not on the OT side
	}{
		{st, "10.77.0.53", `in zone "cell-1" subnet 10.77.0.0/24`},
		{st, "100.80.1.2", "in the overlay prefix 100.80.0.0/16"},
		{st, "100.64.0.9", ""}, // the default prefix is not this site's
		{st, "10.99.0.53", ""},
		{&Site{}, "100.64.0.9", "in the overlay prefix 100.64.0.0/16"},
		{nil, "100.64.0.9", "in the overlay prefix 100.64.0.0/16"},
		{nil, "10.77.0.53", ""},
	} {
		why, ok := c.s.OTSide(netip.MustParseAddr(c.addr))
		if ok != (c.want != "") || why != c.want {
			t.Errorf("OTSide(%s) = %q, %v; want %q", c.addr, why, ok, c.want)
		}
	}
	rs := st.OTRanges()
	if len(rs) != 2 || rs[0].Path != "zones[0]" || rs[1].Path != "overlay.prefix" || rs[1].What() != "the overlay prefix" {
		t.Errorf("OTRanges = %+v", rs)
	}
}

// A static uplink's DNS server in a zone's subnet or the overlay prefix
// is refused where it is named (it was taken before): the gate would
// ask an OT device, or an overlay address, for its names.
func TestParseUplinkDNSOnTheOTSide(t *testing.T) {
	src := withUplink(t, "  mode: static\n  address: 192.168.10.5/24\n  dns: [192.168.10.53, 10.10.1.53, 100.64.0.53]\n")
	s, err := Parse("plant.yaml", []byte(src), Options{Now: now})
	if err == nil {
		t.Fatalf("Parse accepted DNS servers on the OT side: %+v", s.Uplink)
	}
	for _, w := range []string{
		`plant.yaml:85: uplink.dns[1]: DNS server 10.10.1.53 is in zone "cell-1" subnet 10.10.1.0/24 (at zones[0]); the gate resolves names on the uplink side only`,
		`plant.yaml:85: uplink.dns[2]: DNS server 100.64.0.53 is in the overlay prefix 100.64.0.0/16 (at overlay.prefix)`,
	} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error does not contain\n  %s\ngot:\n  %s", w, strings.ReplaceAll(err.Error(), "\n", "\n  "))
		}
	}
	if strings.Contains(err.Error(), "uplink.dns[0]") {
		t.Errorf("the uplink-side DNS server was refused too:\n%v", err)
	}
	// The same file with its DNS server on the uplink side is taken.
	if _, err := Parse("plant.yaml", []byte(withUplink(t, "  mode: static\n  address: 192.168.10.5/24\n  dns: [192.168.10.53]\n")), Options{Now: now}); err != nil {
		t.Errorf("uplink-side DNS refused: %v", err)
	}
}
