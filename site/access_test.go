package site

import (
	"net/netip"
	"testing"
	"time"
)

func TestParseExampleSite(t *testing.T) {
	s, err := Parse("example-site.yaml", readTestdata(t, "example-site.yaml"), Options{Now: now})
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	a := s.Access
	if len(a.Roles) != 3 || len(a.Users) != 3 || len(a.Grants) != 4 || len(a.MaintenanceWindows) != 1 {
		t.Fatalf("unexpected shape: %+v", a)
	}
	bob, _ := a.UserByName("bob")
	if len(bob.SourceNetworks) != 1 || bob.SourceNetworks[0] != netip.MustParsePrefix("192.0.2.0/24") {
		t.Errorf("bob = %+v", bob)
	}
	g, ok := a.GrantByName("engineer-day")
	if !ok {
		t.Fatal("no engineer-day")
	}
	if g.Effect != EffectAllow || g.TimeZone != "Europe/Berlin" || g.MaxSession != 8*time.Hour {
		t.Errorf("engineer-day = %+v", g)
	}
	if len(g.Windows) != 1 || g.Windows[0].Days != 0x3e || g.Windows[0].Hours[0] != (TimeRange{6 * 60, 22 * 60}) {
		t.Errorf("engineer-day windows = %+v", g.Windows)
	}
	if g.Modbus == nil || g.Modbus.Name != "engineer-day" || len(g.Modbus.HoldingRegisters.Write) != 1 {
		t.Errorf("engineer-day modbus = %+v", g.Modbus)
	}
	if _, err := g.Modbus.Compile(); err != nil {
		t.Errorf("modbus rules do not compile: %v", err)
	}
	w := a.MaintenanceWindows[0]
	if !w.Start.Equal(time.Date(2027, 1, 16, 6, 0, 0, 0, time.UTC)) || w.Assets[0] != "plc-tank" {
		t.Errorf("maintenance window = %+v", w)
	}
	if d, _ := a.GrantByName("no-vendor-on-hmi"); d.Effect != EffectDeny || len(d.Protocols) != 0 {
		t.Errorf("deny grant = %+v", d)
	}
}

func TestParseTimeRange(t *testing.T) {
	cases := []struct {
		in   string
		want TimeRange
		err  bool
	}{
		{"14:00-16:00", TimeRange{840, 960}, false},
		{"00:00-24:00", TimeRange{0, 1440}, false},
		{"22:00-06:00", TimeRange{1320, 360}, false},
		{"22:00-00:00", TimeRange{1320, 1440}, false},
		{"23:59-24:00", TimeRange{1439, 1440}, false},
		{"06:00-06:00", TimeRange{}, true},
		{"00:00-00:00", TimeRange{}, true},
		{"24:00-06:00", TimeRange{}, true},
		{"6:00-8:00", TimeRange{}, true},
		{"06:60-08:00", TimeRange{}, true},
		{"06:00-24:01", TimeRange{}, true},
		{"06:00", TimeRange{}, true},
	}
	for _, c := range cases {
		got, err := ParseTimeRange(c.in)
		if (err != nil) != c.err || got != c.want {
			t.Errorf("ParseTimeRange(%q) = %v, %v; want %v, error %t", c.in, got, err, c.want, c.err)
		}
	}
}

func TestParseDays(t *testing.T) {
	cases := map[string]uint8{"mon": 1 << time.Monday, "mon-fri": 0x3e, "sat-sun": 1<<time.Saturday | 1, "fri-mon": 1<<time.Friday | 1<<time.Saturday | 1 | 1<<time.Monday, "sun-sat": AllDays}
	for in, want := range cases {
		if got, err := ParseDays(in); err != nil || got != want {
			t.Errorf("ParseDays(%q) = %#x, %v; want %#x", in, got, err, want)
		}
	}
	for _, bad := range []string{"monday", "mon-", "x-fri", ""} {
		if _, err := ParseDays(bad); err == nil {
			t.Errorf("ParseDays(%q) accepted", bad)
		}
	}
}
