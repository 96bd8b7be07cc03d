package policy

import (
	"strings"
	"testing"
)

// A default deny says its time in the zone the site's grants read their
// hours in, and names it: a candidate grant's, else the one zone the
// site's grants name (the site file has no site-wide zone), else UTC,
// saying why. Before, with no candidate grant (no grant names the user)
// or an untimed first candidate, it said the time in UTC while every
// other line of otgate explain used the grants' zone.
func TestDefaultDenyTimeInTheSiteZone(t *testing.T) {
	const untimed = `grants:
  - name: all
    subjects: {roles: [engineer]}
    targets: {zones: [cell-1]}
    protocols: [modbus]` + rulesRO + "\n"
	const twoZones = `grants:` + `
  - name: day
    subjects: {roles: [engineer]}
    targets: {assets: [plc-tank]}
    protocols: [modbus]
    time_zone: Europe/Berlin
    windows: [{days: [mon-fri], hours: ["06:00-22:00"]}]` + rulesRO + `
  - name: ny
    subjects: {roles: [engineer]}
    targets: {assets: [plc-2]}
    protocols: [modbus]
    time_zone: America/New_York
    windows: [{days: [mon-fri], hours: ["06:00-22:00"]}]` + rulesRO + "\n"
	// alice's candidates for plc-tank: an untimed maintenance-only
	// grant first (its window over), then one in New York's hours.
	const untimedFirst = `maintenance_windows:
  - {name: june, start: 2026-06-01T00:00:00Z, end: 2026-06-02T00:00:00Z, assets: [plc-tank]}
grants:
  - name: in-june
    subjects: {users: [alice]}
    targets: {assets: [plc-tank]}
    protocols: [modbus]
    maintenance: [june]` + rulesRO + `
  - name: ny-day
    subjects: {users: [alice]}
    targets: {assets: [plc-tank]}
    protocols: [modbus]
    time_zone: America/New_York
    windows: [{days: [mon-fri], hours: ["06:00-22:00"]}]` + rulesRO + `
  - name: berlin
    subjects: {roles: [vendor]}
    targets: {assets: [plc-2]}
    protocols: [modbus]
    time_zone: Europe/Berlin
    windows: [{days: [sat], hours: ["08:00-12:00"]}]` + rulesRO + "\n"
	sat := at(t, "2026-12-05T08:00:00Z") // 09:00 in Berlin, 03:00 in New York
	for _, c := range []struct {
		name        string
		p           *Policy
		user, asset string
		want        string
	}{
		{"site zone (the demo's grants: Europe/Berlin)", examplePolicy(t), "carol", "plc-tank",
			"no grant lets carol reach plc-tank over modbus at 2026-12-05T09:00:00+01:00 (Europe/Berlin) (no grant names the user"},
		{"no grant names a zone", compileYAML(t, untimed), "bob", "plc-tank",
			"no grant lets bob reach plc-tank over modbus at 2026-12-05T08:00:00Z (UTC: no grant of the site names a time zone) (no grant names the user"},
		{"grants in two zones", compileYAML(t, twoZones), "bob", "plc-tank",
			"at 2026-12-05T08:00:00Z (UTC: the site's grants name several time zones, Europe/Berlin and America/New_York) (no grant names the user"},
		{"an untimed candidate first", compileYAML(t, untimedFirst), "alice", "plc-tank",
			"no grant lets alice reach plc-tank over modbus at 2026-12-05T03:00:00-05:00 (America/New_York) (in-june applies "},
	} {
		e, err := c.p.Explain(c.user, c.asset, sat)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if len(e.Decisions) == 0 || e.Decisions[0].Decision.Allow || e.Decisions[0].Decision.Rule != RuleDefaultDeny {
			t.Fatalf("%s: decisions %+v, want a default deny", c.name, e.Decisions)
		}
		if r := e.Decisions[0].Decision.Reason; !strings.Contains(r, c.want) {
			t.Errorf("%s: reason\n  %s\nwant it to hold\n  %s", c.name, r, c.want)
		}
	}
}
