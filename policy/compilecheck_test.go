package policy

import (
	"strings"
	"testing"
	"time"

	"github.com/otgate/otgate/site"
)

// The applied policy (/perm/policy/applied.cbor) is decoded with a
// checksum and no validation: Compile is the last check before the
// engine decides on it. What the site loader refuses and the engine
// would otherwise read as something else (a machine-dependent zone, a
// window or a date the calendar normalises into a wider one, a session
// bound that is none, a second definition of a user) is refused, naming
// the grant or user and the field.
func TestCompileRefusesWhatItWouldGuess(t *testing.T) {
	good, err := site.Parse("test.yaml", []byte(baseSite+`grants:
  - name: day
    subjects: {roles: [engineer]}
    targets: {assets: [plc-tank]}
    protocols: [modbus]
    time_zone: Europe/Berlin
    windows: [{days: [mon-fri], hours: ["06:00-22:00"]}]
    dates: [{from: 2026-01-01, until: 2026-12-31}]
    max_session: 8h`+rulesRO+`
`), site.Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	// Through the stored form, as the gate reads it.
	applied := func(edit func(s *site.Site)) *site.Site {
		t.Helper()
		doc, err := site.Compile(good, "test.yaml", nil)
		if err != nil {
			t.Fatal(err)
		}
		a, err := site.Decode(doc)
		if err != nil {
			t.Fatal(err)
		}
		edit(&a.Site)
		doc, err = site.Compile(&a.Site, "test.yaml", nil)
		if err != nil {
			t.Fatal(err)
		}
		if a, err = site.Decode(doc); err != nil {
			t.Fatalf("the edited policy does not decode: %v", err)
		}
		return &a.Site
	}
	if _, err := Compile(applied(func(*site.Site) {})); err != nil {
		t.Fatalf("the unedited policy: %v", err)
	}
	g := func(s *site.Site) *site.Grant { return &s.Access.Grants[0] }
	for _, c := range []struct {
		name string
		edit func(s *site.Site)
		want string
	}{
		{"the machine's zone", func(s *site.Site) { g(s).TimeZone = "Local" }, `grant "day": time zone "Local"`},
		{"a start past the day", func(s *site.Site) { g(s).Windows[0].Hours[0].Start = 1440 }, `grant "day": windows[0].hours[0]`},
		{"a negative start", func(s *site.Site) { g(s).Windows[0].Hours[0].Start = -60 }, `grant "day": windows[0].hours[0]`},
		{"an end weeks away", func(s *site.Site) { g(s).Windows[0].Hours[0].End = 100000 }, `grant "day": windows[0].hours[0]`},
		{"an end at midnight as 0", func(s *site.Site) { g(s).Windows[0].Hours[0].End = 0 }, `grant "day": windows[0].hours[0]`},
		{"no hours", func(s *site.Site) { g(s).Windows[0].Hours = nil }, `grant "day": windows[0].hours`},
		{"no days", func(s *site.Site) { g(s).Windows[0].Days = 0 }, `grant "day": windows[0].days`},
		{"an eighth day", func(s *site.Site) { g(s).Windows[0].Days |= 0x80 }, `grant "day": windows[0].days`},
		{"february 30", func(s *site.Site) { g(s).Dates[0].Until = site.Date{Year: 2026, Month: 2, Day: 30} }, `grant "day": dates[0].until`},
		{"month 13", func(s *site.Site) { g(s).Dates[0].From = site.Date{Year: 2026, Month: 13, Day: 1} }, `grant "day": dates[0].from`},
		{"dates reversed", func(s *site.Site) { g(s).Dates[0].From = site.Date{Year: 2027, Month: 1, Day: 1} }, `grant "day": dates[0]`},
		{"a negative max session", func(s *site.Site) { g(s).MaxSession = -time.Hour }, `grant "day": max_session`},
		{"a second grant of the name", func(s *site.Site) { s.Access.Grants = append(s.Access.Grants, s.Access.Grants[0]) }, `grant "day" defined twice`},
		{"a second dave, not disabled", func(s *site.Site) {
			s.Access.Users = append(s.Access.Users, site.User{Name: "dave", Roles: []string{"engineer"}})
		}, `user "dave" defined twice`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Compile(applied(c.edit))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Compile: %v; want an error with %q", err, c.want)
			}
		})
	}
}

// A second definition of an asset or a maintenance window, or a window
// without a start or an end, is refused by the loader; in the stored form
// the engine read it as something else: the later asset replaced the
// earlier (a grant on the later one's zone reached the asset while
// grants on the earlier one's zone still applied), the later window
// replaced the earlier (a grant on it applied past the end the site file
// validated), and a window without a start applied since the beginning
// of time.
func TestCompileRefusesSecondDefinitions(t *testing.T) {
	good, err := site.Parse("test.yaml", []byte(baseSite+`maintenance_windows:
  - {name: tank-service, start: 2027-01-16T07:00:00+01:00, end: 2027-01-16T17:00:00+01:00, assets: [plc-tank]}
grants:
  - name: service
    subjects: {users: [alice]}
    targets: {assets: [plc-tank]}
    protocols: [modbus]
    maintenance: [tank-service]`+rulesRO+`
  - name: cell-2-any-time
    subjects: {users: [alice]}
    targets: {zones: [cell-2]}
    protocols: [modbus]`+rulesRO+`
`), site.Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	applied := func(edit func(s *site.Site)) *site.Site {
		t.Helper()
		doc, err := site.Compile(good, "test.yaml", nil)
		if err != nil {
			t.Fatal(err)
		}
		a, err := site.Decode(doc)
		if err != nil {
			t.Fatal(err)
		}
		edit(&a.Site)
		if doc, err = site.Compile(&a.Site, "test.yaml", nil); err != nil {
			t.Fatal(err)
		}
		if a, err = site.Decode(doc); err != nil {
			t.Fatalf("the edited policy does not decode: %v", err)
		}
		return &a.Site
	}
	p, err := Compile(applied(func(*site.Site) {}))
	if err != nil {
		t.Fatalf("the unedited policy: %v", err)
	}
	for _, c := range []struct {
		at   string
		rule string
	}{
		{"2027-01-16T12:00:00+01:00", "service"},
		{"2027-01-20T12:00:00+01:00", "default-deny"},
		{"2026-06-20T12:00:00+01:00", "default-deny"},
	} {
		if d := p.Decide(Request{User: "alice", Asset: "plc-tank", Protocol: "modbus", Time: at(t, c.at)}); d.Rule != c.rule {
			t.Fatalf("unedited policy at %s: rule %q (%s), want %q", c.at, d.Rule, d.Reason, c.rule)
		}
	}
	mw := func(s *site.Site) *site.MaintenanceWindow { return &s.Access.MaintenanceWindows[0] }
	for _, c := range []struct {
		name string
		edit func(s *site.Site)
		want string
	}{
		{"a second plc-tank, in cell-2", func(s *site.Site) {
			a := s.Assets[0]
			a.Zone = "cell-2"
			s.Assets = append(s.Assets, a)
		}, `asset "plc-tank" defined twice`},
		{"a second tank-service, a month longer", func(s *site.Site) {
			w := *mw(s)
			w.End = w.End.AddDate(0, 1, 0)
			s.Access.MaintenanceWindows = append(s.Access.MaintenanceWindows, w)
		}, `maintenance window "tank-service" defined twice`},
		{"no start", func(s *site.Site) { mw(s).Start = time.Time{} }, `maintenance window "tank-service": no start`},
		{"no end", func(s *site.Site) { mw(s).End = time.Time{} }, `maintenance window "tank-service": no end`},
		{"an end before the start", func(s *site.Site) { mw(s).End = mw(s).Start.Add(-time.Hour) }, `maintenance window "tank-service": end`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Compile(applied(c.edit))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Compile: %v; want an error with %q", err, c.want)
			}
		})
	}
}
