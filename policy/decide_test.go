package policy

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

// grantYAML is one allow grant for engineers on plc-tank over modbus with
// the given schedule lines (already indented by four spaces).
func grantYAML(name, schedule string) string {
	return `
  - name: ` + name + `
    subjects: {roles: [engineer]}
    targets: {assets: [plc-tank]}
    protocols: [modbus]` + schedule + rulesRO
}

func TestDecideUntilAcrossDSTAndMidnight(t *testing.T) {
	const berlin = "\n    time_zone: Europe/Berlin"
	cases := []struct {
		name  string
		extra string // sections after the base
		at    string
		allow bool
		rule  string
		until string // RFC 3339; "" for none
	}{
		// 2026-03-29: clocks go 02:00 CET -> 03:00 CEST (01:00Z).
		{"whole sunday, spring forward, inside", "grants:" + grantYAML("sun", berlin+"\n    windows: [{days: [sun], hours: [\"00:00-24:00\"]}]"),
			"2026-03-29T10:00:00+02:00", true, "sun", "2026-03-29T22:00:00Z"},
		{"whole sunday, spring forward, just before", "grants:" + grantYAML("sun", berlin+"\n    windows: [{days: [sun]}]"),
			"2026-03-28T22:59:59Z", false, "default-deny", "2026-03-28T23:00:00Z"},
		{"spring forward day lasts 23 hours", "grants:" + grantYAML("sun", berlin+"\n    windows: [{days: [sun], hours: [\"00:00-24:00\"]}]"),
			"2026-03-28T23:00:00Z", true, "sun", "2026-03-29T22:00:00Z"},
		// 2026-10-25: clocks go 03:00 CEST -> 02:00 CET (01:00Z).
		{"fall back day lasts 25 hours", "grants:" + grantYAML("sun", berlin+"\n    windows: [{days: [sun], hours: [\"00:00-24:00\"]}]"),
			"2026-10-24T22:00:00Z", true, "sun", "2026-10-25T23:00:00Z"},
		{"crossing midnight into spring forward", "grants:" + grantYAML("night", berlin+"\n    windows: [{days: [sat], hours: [\"22:00-06:00\"]}]"),
			"2026-03-29T01:30:00+01:00", true, "night", "2026-03-29T04:00:00Z"},
		{"crossing midnight belongs to the start day", "grants:" + grantYAML("night", berlin+"\n    windows: [{days: [sat], hours: [\"22:00-06:00\"]}]"),
			"2026-03-30T01:30:00+02:00", false, "default-deny", "2026-04-04T20:00:00Z"},
		{"start inside the spring gap", "grants:" + grantYAML("gap", berlin+"\n    windows: [{days: [sun], hours: [\"02:30-04:00\"]}]"),
			"2026-03-29T00:59:00Z", false, "default-deny", "2026-03-29T01:00:00Z"},
		{"window after the gap", "grants:" + grantYAML("gap", berlin+"\n    windows: [{days: [sun], hours: [\"02:30-04:00\"]}]"),
			"2026-03-29T03:10:00+02:00", true, "gap", "2026-03-29T02:00:00Z"},
		{"ambiguous start: first occurrence", "grants:" + grantYAML("amb", berlin+"\n    windows: [{days: [sun], hours: [\"02:30-04:00\"]}]"),
			"2026-10-25T00:29:00Z", false, "default-deny", "2026-10-25T00:30:00Z"},
		{"ambiguous start: runs through the repeated hour", "grants:" + grantYAML("amb", berlin+"\n    windows: [{days: [sun], hours: [\"02:30-04:00\"]}]"),
			"2026-10-25T02:15:00+01:00", true, "amb", "2026-10-25T03:00:00Z"},
		{"ambiguous end: first occurrence", "grants:" + grantYAML("amb", berlin+"\n    windows: [{days: [sun], hours: [\"01:00-02:30\"]}]"),
			"2026-10-25T01:30:00+02:00", true, "amb", "2026-10-25T00:30:00Z"},
		{"weekday window end on friday", "grants:" + grantYAML("day", berlin+"\n    windows: [{days: [mon-fri], hours: [\"06:00-22:00\"]}]"),
			"2026-10-23T21:00:00+02:00", true, "day", "2026-10-23T20:00:00Z"},
		{"weekend deny until monday across fall back", "grants:" + grantYAML("day", berlin+"\n    windows: [{days: [mon-fri], hours: [\"06:00-22:00\"]}]"),
			"2026-10-24T12:00:00+02:00", false, "default-deny", "2026-10-26T05:00:00Z"},
		{"24:00 joins the next day's 00:00", "grants:" + grantYAML("late", berlin+"\n    windows: [{days: [mon], hours: [\"22:00-24:00\"]}, {days: [tue], hours: [\"00:00-02:00\"]}]"),
			"2026-10-26T23:00:00+01:00", true, "late", "2026-10-27T01:00:00Z"},
		{"date range end", "grants:" + grantYAML("march", berlin+"\n    dates: [{from: 2026-03-01, until: 2026-03-29}]"),
			"2026-03-29T12:00:00+02:00", true, "march", "2026-03-29T22:00:00Z"},
		{"date range and window: the range ends first", "grants:" + grantYAML("both", berlin+"\n    windows: [{hours: [\"20:00-02:00\"]}]\n    dates: [{from: 2026-10-01, until: 2026-10-24}]"),
			"2026-10-24T23:00:00+02:00", true, "both", "2026-10-24T22:00:00Z"},
		{"no schedule: always", "grants:" + grantYAML("always", ""),
			"2026-03-29T02:30:00+02:00", true, "always", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := compileYAML(t, tc.extra)
			d := p.Decide(Request{User: "alice", Asset: "plc-tank", Protocol: "modbus", Time: at(t, tc.at)})
			if d.Allow != tc.allow || d.Rule != tc.rule {
				t.Fatalf("Decide = allow %t rule %q (%s); want allow %t rule %q", d.Allow, d.Rule, d.Reason, tc.allow, tc.rule)
			}
			var want time.Time
			if tc.until != "" {
				want = at(t, tc.until)
			}
			if !d.Until.Equal(want) {
				t.Fatalf("Until = %v, want %v (%s)", d.Until.UTC(), want.UTC(), d.Reason)
			}
			if d.Allow && d.Modbus == nil {
				t.Error("allowed modbus without the grant's modbus rules")
			}
		})
	}
}

func TestDecideDenyWindowOverAllowWindow(t *testing.T) {
	p := compileYAML(t, `maintenance_windows:
  - {name: freeze, start: 2026-10-23T12:00:00Z, end: 2026-10-23T14:00:00Z, zones: [cell-1]}
grants:`+grantYAML("day", "\n    time_zone: Europe/Berlin\n    windows: [{days: [mon-fri], hours: [\"06:00-22:00\"]}]")+`
  - name: production-freeze
    effect: deny
    subjects: {roles: [engineer, vendor]}
    targets: {zones: [cell-1]}
    maintenance: [freeze]
`)
	steps := []struct {
		at, rule, until string
		allow           bool
	}{
		{"2026-10-23T10:00:00Z", "day", "2026-10-23T12:00:00Z", true},
		{"2026-10-23T12:00:00Z", "production-freeze", "2026-10-23T14:00:00Z", false},
		{"2026-10-23T13:59:59Z", "production-freeze", "2026-10-23T14:00:00Z", false},
		{"2026-10-23T14:00:00Z", "day", "2026-10-23T20:00:00Z", true},
	}
	for _, s := range steps {
		d := p.Decide(Request{User: "alice", Asset: "plc-tank", Protocol: "modbus", Time: at(t, s.at)})
		if d.Allow != s.allow || d.Rule != s.rule || !d.Until.Equal(at(t, s.until)) {
			t.Errorf("at %s: allow %t rule %q until %v (%s); want allow %t rule %q until %s", s.at, d.Allow, d.Rule, d.Until.UTC(), d.Reason, s.allow, s.rule, s.until)
		}
	}
	// The freeze covers cell-1 only: plc-2 in cell-2 is untouched by it.
	d := p.Decide(Request{User: "alice", Asset: "hmi-1", Protocol: "modbus", Time: at(t, "2026-10-23T12:30:00Z")})
	if d.Allow || d.Rule != "production-freeze" || !strings.Contains(d.Reason, "an explicit deny wins") {
		t.Errorf("hmi-1 in the freeze: %+v", d)
	}
}

func TestDecideSpecificityAndDenyWins(t *testing.T) {
	p := compileYAML(t, `grants:
  - name: zone-wide
    subjects: {roles: [engineer]}
    targets: {zones: [cell-1]}
    protocols: [modbus]
    modbus: {units: [1], functions: [read-only], holding-registers: {read: ["0-9"]}}
  - name: alice-on-tank
    subjects: {users: [alice]}
    targets: {assets: [plc-tank]}
    protocols: [modbus]
    max_session: 2h
    modbus: {units: [1], functions: [read-write], holding-registers: {read: ["0-99"], write: ["50-55"]}}
  - name: role-on-tank
    subjects: {roles: [engineer]}
    targets: {assets: [plc-tank]}
    protocols: [modbus]
    modbus: {units: [1], functions: [read-only], holding-registers: {read: ["0-49"]}}
  - name: no-s7
    effect: deny
    subjects: {users: [alice]}
    targets: {zones: [cell-2]}
    protocols: [s7]
  - name: s7-for-engineers
    subjects: {roles: [engineer]}
    targets: {assets: [plc-2]}
    protocols: [s7, modbus]
    modbus: {units: [1], functions: [read-only], holding-registers: {read: ["0-9"]}}
`)
	tm := at(t, "2026-06-01T12:00:00Z")
	d := p.Decide(Request{User: "alice", Asset: "plc-tank", Protocol: "modbus", Time: tm})
	if !d.Allow || d.Rule != "alice-on-tank" || d.MaxSession != 2*time.Hour || d.Modbus == nil || !d.Until.IsZero() {
		t.Fatalf("most specific grant not chosen: %+v", d)
	}
	if d.SessionDeadline(tm) != tm.Add(2*time.Hour) {
		t.Errorf("deadline = %v", d.SessionDeadline(tm))
	}
	// hmi-1 is reached only through the zone grant.
	if d := p.Decide(Request{User: "alice", Asset: "hmi-1", Protocol: "modbus", Time: tm}); !d.Allow || d.Rule != "zone-wide" {
		t.Errorf("hmi-1: %+v", d)
	}
	// Another engineer gets the role grant naming the asset, not the zone one.
	// (dave is disabled; use a fresh policy view through Explain instead.)
	if d := p.Decide(Request{User: "alice", Asset: "plc-2", Protocol: "s7", Time: tm}); d.Allow || d.Rule != "no-s7" {
		t.Errorf("deny did not win over a more specific allow: %+v", d)
	}
	if d := p.Decide(Request{User: "alice", Asset: "plc-2", Protocol: "modbus", Time: tm}); !d.Allow || d.Rule != "s7-for-engineers" {
		t.Errorf("a deny for s7 leaked into modbus: %+v", d)
	}
	if d := p.Decide(Request{User: "alice", Asset: "hmi-1", Protocol: "https", Time: tm}); d.Allow || d.Rule != "default-deny" {
		t.Errorf("https without a grant: %+v", d)
	}
}

func TestDecideIdentityChecks(t *testing.T) {
	p := compileYAML(t, `grants:
  - name: all
    subjects: {roles: [engineer, vendor]}
    targets: {zones: [cell-1, cell-2]}
    protocols: [modbus]`+rulesRO+"\n")
	tm := at(t, "2026-06-01T12:00:00Z")
	vendorNet := netip.MustParseAddr("192.0.2.7")
	cases := []struct {
		name string
		r    Request
		rule string
		say  string
	}{
		{"unknown user", Request{User: "mallory", Asset: "plc-tank", Protocol: "modbus", Time: tm}, RuleUnknownUser, `no user "mallory"`},
		{"disabled user", Request{User: "dave", Asset: "plc-tank", Protocol: "modbus", Time: tm}, RuleUserDisabled, `user "dave" is disabled`},
		{"outside source networks", Request{User: "bob", Asset: "plc-tank", Protocol: "modbus", Source: netip.MustParseAddr("198.51.100.1"), Time: tm}, RuleSourceNetwork, "only from 192.0.2.0/24, 2001:db8::/32, not from 198.51.100.1"},
		{"no source at all", Request{User: "bob", Asset: "plc-tank", Protocol: "modbus", Time: tm}, RuleSourceNetwork, "an unknown address"},
		{"unknown asset", Request{User: "alice", Asset: "plc-9", Protocol: "modbus", Time: tm}, RuleUnknownAsset, `no asset "plc-9"`},
		{"protocol not served", Request{User: "alice", Asset: "plc-tank", Protocol: "s7", Time: tm}, RuleProtocolNotServed, `does not serve "s7" (it serves modbus/502)`},
		{"no time", Request{User: "alice", Asset: "plc-tank", Protocol: "modbus"}, RuleNoTime, "no time"},
	}
	for _, c := range cases {
		d := p.Decide(c.r)
		if d.Allow || d.Rule != c.rule || !strings.Contains(d.Reason, c.say) {
			t.Errorf("%s: %+v; want rule %q and reason containing %q", c.name, d, c.rule, c.say)
		}
	}
	for _, src := range []string{"192.0.2.7", "::ffff:192.0.2.7", "2001:db8::5"} {
		if d := p.Decide(Request{User: "bob", Asset: "plc-tank", Protocol: "modbus", Source: netip.MustParseAddr(src), Time: tm}); !d.Allow {
			t.Errorf("bob from %s: %+v", src, d)
		}
	}
	_ = vendorNet
}

// A recurring deny window inside an allow window, on the fall-back day:
// the deny's 02:30 is the first 02:30 (CEST) and its 04:00 is CET.
func TestDecideRecurringDenyAcrossFallBack(t *testing.T) {
	p := compileYAML(t, "grants:"+grantYAML("sunday", "\n    time_zone: Europe/Berlin\n    windows: [{days: [sun], hours: [\"00:00-24:00\"]}]")+`
  - name: backup-hours
    effect: deny
    subjects: {roles: [engineer]}
    targets: {zones: [cell-1]}
    time_zone: Europe/Berlin
    windows: [{days: [sun], hours: ["02:30-04:00"]}]
`)
	steps := []struct {
		at, rule, until string
		allow           bool
	}{
		{"2026-10-24T22:00:00Z", "sunday", "2026-10-25T00:30:00Z", true},
		{"2026-10-25T00:30:00Z", "backup-hours", "2026-10-25T03:00:00Z", false},
		{"2026-10-25T02:10:00+01:00", "backup-hours", "2026-10-25T03:00:00Z", false}, // the second 02:10
		{"2026-10-25T03:00:00Z", "sunday", "2026-10-25T23:00:00Z", true},
	}
	for _, s := range steps {
		d := p.Decide(Request{User: "alice", Asset: "plc-tank", Protocol: "modbus", Time: at(t, s.at)})
		if d.Allow != s.allow || d.Rule != s.rule || !d.Until.Equal(at(t, s.until)) {
			t.Errorf("at %s: allow %t rule %q until %v (%s); want allow %t rule %q until %s", s.at, d.Allow, d.Rule, d.Until.UTC(), d.Reason, s.allow, s.rule, s.until)
		}
	}
}
