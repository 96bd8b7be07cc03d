package site

import (
	"errors"
	"strings"
	"testing"
)

// editExample returns the example site with old replaced by new (exactly
// once).
func editExample(t *testing.T, old, new string) string {
	t.Helper()
	src := string(readTestdata(t, "example-site.yaml"))
	if strings.Count(src, old) != 1 {
		t.Fatalf("edit: %q occurs %d times in example-site.yaml", old, strings.Count(src, old))
	}
	return strings.Replace(src, old, new, 1)
}

func TestParseAccessErrors(t *testing.T) {
	cases := []struct {
		name string
		old  string
		new  string
		want []string
	}{
		{"user with unknown role", "    roles: [vendor]\n    # Bob", "    roles: [vendor, admin]\n    # Bob",
			[]string{`example-site.yaml:43: users[1].roles[1]: unknown role "admin" (known: engineer, operator, vendor)`}},
		{"duplicate role", "  - name: operator\n", "  - name: engineer\n",
			[]string{`example-site.yaml:34: roles[2].name: duplicate role "engineer" (first at line 30)`}},
		{"duplicate user", "  - name: carol", "  - name: alice",
			[]string{`example-site.yaml:46: users[2].name: duplicate user "alice" (first at line 38)`}},
		{"unknown user field", "    display_name: Alice Berger", "    display_name: Alice Berger\n    password: hunter2",
			[]string{`example-site.yaml:40: users[0].password: unknown field (known: name, display_name, roles, disabled, source_networks)`}},
		{"disabled not a bool", "    display_name: Carol Schmidt", "    display_name: Carol Schmidt\n    disabled: maybe",
			[]string{`example-site.yaml:48: users[2].disabled: want true or false, got str "maybe"`}},
		{"bad source network", "source_networks: [192.0.2.0/24]", "source_networks: [192.0.2.7/24, nonsense]",
			[]string{`example-site.yaml:45: users[1].source_networks[0]: CIDR "192.0.2.7/24" has host bits set (did you mean 192.0.2.0/24?)`,
				`users[1].source_networks[1]: bad CIDR "nonsense"`}},
		{"maintenance end before start", "    end: 2027-01-16T17:00:00+01:00", "    end: 2027-01-16T06:00:00+01:00",
			[]string{`example-site.yaml:54: maintenance_windows[0].end: end 2027-01-16T05:00:00Z is not after start 2027-01-16T06:00:00Z`}},
		{"maintenance unknown asset", "    assets: [plc-tank]\n\ngrants", "    assets: [plc-tanq]\n\ngrants",
			[]string{`example-site.yaml:55: maintenance_windows[0].assets[0]: unknown asset "plc-tanq" (known: hmi-1, plc-tank)`}},
		{"maintenance without scope", "    assets: [plc-tank]\n\ngrants", "\ngrants",
			[]string{`maintenance_windows[0].zones: a maintenance window must list the zones or assets it covers`}},
		{"grant unknown role", "      roles: [engineer]\n    targets", "      roles: [engineers]\n    targets",
			[]string{`example-site.yaml:61: grants[0].subjects.roles[0]: unknown role "engineers" (known: engineer, operator, vendor)`}},
		{"grant unknown zone", "      zones: [cell-1]\n    protocols: [modbus]", "      zones: [cell-2]\n    protocols: [modbus]",
			[]string{`example-site.yaml:63: grants[0].targets.zones[0]: unknown zone "cell-2" (known: cell-1)`}},
		{"grant protocol not served", "    protocols: [https, vnc]", "    protocols: [https, ssh]",
			[]string{`example-site.yaml:104: grants[2].protocols[1]: none of the grant's targets serves "ssh" (they serve: https, vnc)`}},
		{"grant unknown protocol", "    protocols: [https, vnc]", "    protocols: [https, profinet]",
			[]string{`example-site.yaml:104: grants[2].protocols[1]: unknown protocol "profinet"`}},
		{"bad hours", `        hours: ["06:00-22:00"]`, `        hours: ["06:00-25:00", "22:00-22:00"]`,
			[]string{`example-site.yaml:68: grants[0].windows[0].hours[0]: time range "06:00-25:00": bad time "25:00"`,
				`grants[0].windows[0].hours[1]: time range "22:00-22:00" is empty`}},
		{"protocol on two ports", "      - protocol: modbus\n        port: 502\n", "      - protocol: modbus\n        port: 502\n      - protocol: modbus\n        port: 503\n",
			[]string{`example-site.yaml:22: assets[0].services[1]: protocol modbus listed twice (ports 502 and 503): a connection names the asset and the protocol`}},
		{"signed times", `        hours: ["06:00-22:00"]`, `        hours: ["+6:00-22:00", "01:00--0:30"]`,
			[]string{`example-site.yaml:68: grants[0].windows[0].hours[0]: time range "+6:00-22:00": bad time "+6:00" (want HH:MM)`,
				`grants[0].windows[0].hours[1]: time range "01:00--0:30": bad time "-0:30" (want HH:MM)`}},
		{"bad day", "      - days: [mon-fri]", "      - days: [monday-friday]",
			[]string{`example-site.yaml:67: grants[0].windows[0].days[0]: bad day "monday-friday"`}},
		{"bad time zone", "    time_zone: Europe/Berlin\n    windows:\n      - days: [mon-fri]", "    time_zone: Europe/Berlinn\n    windows:\n      - days: [mon-fri]",
			[]string{`example-site.yaml:65: grants[0].time_zone: unknown time zone "Europe/Berlinn": not an IANA time zone`}},
		{"window without time zone", "    time_zone: Europe/Berlin\n    windows:\n      - days: [mon-fri]", "    windows:\n      - days: [mon-fri]",
			[]string{`grants[0].time_zone: missing (required with windows or dates; e.g. Europe/Berlin)`}},
		{"dates reversed", "    max_session: 8h", "    dates: [{from: 2027-02-01, until: 2027-01-01}]\n    max_session: 8h",
			[]string{`example-site.yaml:69: grants[0].dates[0].until: until 2027-01-01 is before from 2027-02-01`}},
		{"modbus missing", "    max_session: 8h\n    modbus:\n      units: [1]\n      functions: [read-write]\n", "    max_session: 8h\n    modbuss:\n      units: [1]\n      functions: [read-write]\n",
			[]string{`example-site.yaml:70: grants[0].modbuss: unknown field`, `example-site.yaml:58: grants[0].modbus: missing (an allow grant for modbus says which operations it allows`}},
		{"modbus bad unit", "    modbus:\n      units: [1]\n      functions: [read-write]", "    modbus:\n      units: [300]\n      functions: [read-write]",
			[]string{`example-site.yaml:71: grants[0].modbus.units[0]: 300 is out of range 0..255`}},
		{"modbus unknown function", "      functions: [read-write]", "      functions: [read-write, everything]",
			[]string{`example-site.yaml:72: grants[0].modbus.functions[1]: unknown function "everything"`}},
		{"modbus bad range", `        write: ["50-55"]`, `        write: ["55-50"]`,
			[]string{`example-site.yaml:75: grants[0].modbus.holding-registers.write[0]: range "55-50": first address 55 is after last address 50`}},
		{"modbus write to input registers", "      input-registers:\n        read: [\"0-99\"]", "      input-registers:\n        read: [\"0-99\"]\n        write: [\"1\"]",
			[]string{`grants[1].modbus.input-registers.write: input-registers are read-only in Modbus`}},
		{"modbus unknown field", "      holding-registers:\n        read: [\"0-99\"]\n        write", "      holding-registers:\n        read: [\"0-99\"]\n        wrote: [1]\n        write",
			[]string{`example-site.yaml:75: grants[0].modbus.holding-registers.wrote: unknown field (known: read, write)`}},
		// A list whose absence means "no restriction", written empty or
		// with no value (every entry commented out), would lift the
		// restriction without a word: refused.
		{"maintenance empty", "    maintenance: [tank-service-2027-01]", "    maintenance: []",
			[]string{`example-site.yaml:88: grants[1].maintenance: empty list (leave maintenance out for no maintenance window)`}},
		{"maintenance no value", "    maintenance: [tank-service-2027-01]", "    maintenance:\n    #  - tank-service-2027-01",
			[]string{`example-site.yaml:88: grants[1].maintenance: no value (leave maintenance out for no maintenance window)`}},
		{"windows no value", "    windows:\n      - days: [mon-fri]\n        hours: [\"06:00-22:00\"]\n    max_session: 8h\n    modbus:\n      units: [1]\n      functions: [read-write]",
			"    windows:\n    #  - days: [mon-fri]\n    #    hours: [\"06:00-22:00\"]\n    max_session: 8h\n    modbus:\n      units: [1]\n      functions: [read-write]",
			[]string{`example-site.yaml:66: grants[0].windows: no value (leave windows out for any time)`}},
		{"windows empty", "    windows:\n      - days: [mon-fri]\n        hours: [\"06:00-22:00\"]\n    max_session: 8h\n    modbus:\n      units: [1]\n      functions: [read-write]",
			"    windows: []\n    max_session: 8h\n    modbus:\n      units: [1]\n      functions: [read-write]",
			[]string{`example-site.yaml:66: grants[0].windows: empty list (leave windows out for any time)`}},
		{"dates no value", "    max_session: 8h", "    dates:\n    max_session: 8h",
			[]string{`example-site.yaml:69: grants[0].dates: no value (leave dates out for every date)`}},
		{"dates empty", "    max_session: 8h", "    dates: []\n    max_session: 8h",
			[]string{`example-site.yaml:69: grants[0].dates: empty list (leave dates out for every date)`}},
		{"source networks empty", "source_networks: [192.0.2.0/24]", "source_networks: []",
			[]string{`example-site.yaml:45: users[1].source_networks: empty list (leave source_networks out for any source)`}},
		{"source networks no value", "source_networks: [192.0.2.0/24]", "source_networks:",
			[]string{`example-site.yaml:45: users[1].source_networks: no value (leave source_networks out for any source)`}},
		{"unknown maintenance window", "    maintenance: [tank-service-2027-01]", "    maintenance: [tank-service-2026-01]",
			[]string{`example-site.yaml:88: grants[1].maintenance[0]: unknown maintenance window "tank-service-2026-01" (known: tank-service-2027-01)`}},
		{"maintenance window covering no target", "    assets: [plc-tank]\n\ngrants", "    assets: [hmi-1]\n\ngrants",
			[]string{`example-site.yaml:88: grants[1].maintenance[0]: maintenance window "tank-service-2027-01" covers none of the grant's targets`}},
		{"reserved grant name", "  - name: operator-hmi", "  - name: default-deny",
			[]string{`example-site.yaml:98: grants[2].name: "default-deny" is reserved`}},
		{"duplicate grant", "  - name: operator-hmi", "  - name: engineer-day",
			[]string{`example-site.yaml:98: grants[2].name: duplicate grant "engineer-day" (first at line 58)`}},
		{"deny with modbus", "    effect: deny\n", "    effect: deny\n    max_session: 1h\n",
			[]string{`grants[3].max_session: a deny grant has no sessions`}},
		{"bad effect", "    effect: deny\n", "    effect: forbid\n",
			[]string{`example-site.yaml:108: grants[3].effect: unknown effect "forbid" (want allow or deny)`}},
		{"allow without protocols", "    protocols: [https, vnc]\n", "",
			[]string{`grants[2].protocols: missing (an allow grant names the protocols it allows`}},
		{"empty subjects", "      roles: [operator]\n    targets:\n      assets: [hmi-1]\n    protocols", "      {}\n    targets:\n      assets: [hmi-1]\n    protocols",
			[]string{`grants[2].subjects: want at least one user or role`}},
		{"unknown user in grant", "      roles: [operator]\n    targets:\n      assets: [hmi-1]\n    protocols", "      users: [mallory]\n    targets:\n      assets: [hmi-1]\n    protocols",
			[]string{`example-site.yaml:101: grants[2].subjects.users[0]: unknown user "mallory" (known: alice, bob, carol)`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := editExample(t, tc.old, tc.new)
			s, err := Parse("example-site.yaml", []byte(src), Options{Now: now})
			if err == nil {
				t.Fatalf("Parse accepted a bad file: %+v", s.Access)
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

// TestParseAccessCollectsAllErrors: problems in several new sections are
// all reported at once, in line order.
func TestParseAccessCollectsAllErrors(t *testing.T) {
	src := editExample(t, "    roles: [engineer]\n  - name: bob", "    roles: [engineerz]\n  - name: bob")
	src = strings.Replace(src, "      zones: [cell-1]\n    protocols: [modbus]", "      zones: [cell-9]\n    protocols: [modbus]", 1)
	src = strings.Replace(src, `        hours: ["08:00-12:00"]`, `        hours: ["8-12"]`, 1)
	src = strings.Replace(src, "    effect: deny\n", "    effect: nope\n", 1)
	_, err := Parse("example-site.yaml", []byte(src), Options{Now: now})
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
