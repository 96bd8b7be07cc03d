package policy

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/otgate/otgate/inspect/modbus"
	"github.com/otgate/otgate/site"
)

func examplePolicy(t testing.TB) *Policy {
	t.Helper()
	s, _, err := site.Load("../site/testdata/example-site.yaml", site.Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	p, err := Compile(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// The demo site: alice (engineer) on plc-tank on a weekday, her Modbus
// rules are engineer-day's.
func TestExampleSiteDecisions(t *testing.T) {
	p := examplePolicy(t)
	wed := at(t, "2026-12-02T10:00:00+01:00")
	d := p.Decide(Request{User: "alice", Asset: "plc-tank", Protocol: "modbus", Source: netip.MustParseAddr("192.0.2.50"), Time: wed})
	if !d.Allow || d.Rule != "engineer-day" || !d.Until.Equal(at(t, "2026-12-02T22:00:00+01:00")) || d.MaxSession != 8*time.Hour {
		t.Fatalf("alice on wednesday: %+v", d)
	}
	// The compiled rules are engineer-day's: read 0-99, write 50-55 of unit 1.
	check := func(pdu []byte, allowed bool) {
		t.Helper()
		var req modbus.Request
		if err := req.Parse(append([]byte{0, 1, 0, 0, 0, byte(len(pdu) + 1), 1}, pdu...)); err != nil {
			t.Fatal(err)
		}
		v := d.Modbus.Judge(&req)
		if v.Allow != allowed {
			t.Errorf("judge % x: %+v, want allowed %t", pdu, v, allowed)
		}
	}
	check([]byte{3, 0, 0, 0, 100}, true)  // read holding 0-99
	check([]byte{3, 0, 0, 0, 101}, false) // read holding 0-100
	check([]byte{6, 0, 52, 0, 7}, true)   // write holding 52
	check([]byte{6, 0, 56, 0, 7}, false)  // write holding 56
	check([]byte{1, 0, 0, 0, 1}, false)   // read coils: no coil ranges
	sat := at(t, "2026-12-05T09:00:00+01:00")
	if d := p.Decide(Request{User: "alice", Asset: "plc-tank", Protocol: "modbus", Time: sat}); d.Allow || !d.Until.Equal(at(t, "2026-12-07T06:00:00+01:00")) {
		t.Errorf("alice on saturday: %+v", d)
	}
	bob := Request{User: "bob", Asset: "plc-tank", Protocol: "modbus", Source: netip.MustParseAddr("192.0.2.9"), Time: sat}
	if d := p.Decide(bob); !d.Allow || d.Rule != "vendor-maintenance" || !d.Until.Equal(at(t, "2026-12-05T12:00:00+01:00")) {
		t.Errorf("bob on saturday morning: %+v", d)
	}
	bob.Time = at(t, "2027-01-16T15:00:00+01:00") // a saturday inside the maintenance window
	if d := p.Decide(bob); !d.Allow || d.Rule != "vendor-maintenance" || !d.Until.Equal(at(t, "2027-01-16T17:00:00+01:00")) {
		t.Errorf("bob in the maintenance window: %+v", d)
	}
	bob.Source = netip.MustParseAddr("198.51.100.4")
	if d := p.Decide(bob); d.Allow || d.Rule != RuleSourceNetwork {
		t.Errorf("bob from outside the vendor range: %+v", d)
	}
	if d := p.Decide(Request{User: "bob", Asset: "hmi-1", Protocol: "vnc", Source: netip.MustParseAddr("192.0.2.9"), Time: sat}); d.Allow || d.Rule != "no-vendor-on-hmi" {
		t.Errorf("bob on the HMI: %+v", d)
	}
}

func TestWhoCanReach(t *testing.T) {
	p := examplePolicy(t)
	got, err := p.WhoCanReach("plc-tank", at(t, "2026-12-05T09:00:00+01:00"))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].User != "bob" || got[0].Rule != "vendor-maintenance" || len(got[0].SourceNetworks) != 1 {
		t.Fatalf("saturday 09:00: %+v", got)
	}
	got, _ = p.WhoCanReach("hmi-1", at(t, "2026-12-05T09:00:00+01:00"))
	if len(got) != 2 || got[0].User != "carol" || got[0].Protocol != "https" || got[1].Protocol != "vnc" || !got[0].Until.IsZero() {
		t.Fatalf("hmi-1: %+v", got)
	}
	if _, err := p.WhoCanReach("plc-9", time.Now()); err == nil || !strings.Contains(err.Error(), "known: hmi-1, plc-tank") {
		t.Errorf("unknown asset: %v", err)
	}
}

func TestExplainPair(t *testing.T) {
	p := examplePolicy(t)
	e, err := p.Explain("alice", "plc-tank", at(t, "2026-12-05T09:00:00+01:00"))
	if err != nil {
		t.Fatal(err)
	}
	if len(e.Decisions) != 1 || e.Decisions[0].Decision.Allow || e.Decisions[0].Decision.Rule != RuleDefaultDeny {
		t.Fatalf("decisions: %+v", e.Decisions)
	}
	want := map[string][]string{
		"engineer-day":       {"role engineer, zone cell-1, modbus; but not now (mon-fri 06:00-22:00 Europe/Berlin), next from 2026-12-07T06:00:00+01:00"},
		"vendor-maintenance": {"subjects: alice is not named and has none of its roles (roles vendor)"},
		"operator-hmi":       {"subjects: alice is not named"},
		"no-vendor-on-hmi":   {"subjects: alice"},
	}
	if len(e.Grants) != len(want) {
		t.Fatalf("grants: %+v", e.Grants)
	}
	for _, c := range e.Grants {
		for _, w := range want[c.Grant] {
			if !strings.Contains(c.Why, w) {
				t.Errorf("%s: why = %q, want it to contain %q", c.Grant, c.Why, w)
			}
		}
	}
	e, _ = p.Explain("carol", "plc-tank", at(t, "2026-12-05T09:00:00+01:00"))
	for _, c := range e.Grants {
		if c.Grant == "operator-hmi" && !strings.Contains(c.Why, "targets: plc-tank (zone cell-1) is not among assets hmi-1") {
			t.Errorf("operator-hmi for carol on plc-tank: %q", c.Why)
		}
	}
	if _, err := p.Explain("mallory", "plc-tank", time.Now()); err == nil || !strings.Contains(err.Error(), "known: alice, bob, carol") {
		t.Errorf("unknown user: %v", err)
	}
}

func TestReevaluate(t *testing.T) {
	old := examplePolicy(t)
	src, err := readExample()
	if err != nil {
		t.Fatal(err)
	}
	reload := func(from, to string) *Policy {
		t.Helper()
		if strings.Count(src, from) != 1 {
			t.Fatalf("edit %q", from)
		}
		s, err := site.Parse("example-site.yaml", []byte(strings.Replace(src, from, to, 1)), site.Options{Now: now})
		if err != nil {
			t.Fatal(err)
		}
		p, err := Compile(s)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	sess := Session{User: "alice", Asset: "plc-tank", Protocol: "modbus", Start: at(t, "2026-12-02T09:00:00+01:00")}
	tm := at(t, "2026-12-02T10:00:00+01:00")

	before := Reevaluate(nil, old, sess, tm).Decision.Modbus
	if r := Reevaluate(old, old, sess, tm); !r.Allowed || !r.Decision.Modbus.SameRules(before) || r.Reason != "" {
		t.Errorf("same policy: %+v", r)
	}
	shorter := reload(`hours: ["06:00-22:00"]`, `hours: ["06:00-09:30"]`)
	if r := Reevaluate(old, shorter, sess, tm); r.Allowed || !strings.Contains(r.Reason, `no longer allowed (was allowed by grant "engineer-day")`) {
		t.Errorf("window shortened: %+v", r)
	}
	disabled := reload("    display_name: Alice Berger\n", "    display_name: Alice Berger\n    disabled: true\n")
	if r := Reevaluate(old, disabled, sess, tm); r.Allowed || r.Decision.Rule != RuleUserDisabled {
		t.Errorf("user disabled: %+v", r)
	}
	maxed := reload("    max_session: 8h", "    max_session: 30m")
	if r := Reevaluate(old, maxed, sess, tm); r.Allowed || !strings.Contains(r.Reason, "longer than grant \"engineer-day\" allows (max_session 30m0s)") {
		t.Errorf("max session cut: %+v", r)
	}
	narrower := reload(`        write: ["50-55"]`, `        write: ["50-51"]`)
	if r := Reevaluate(old, narrower, sess, tm); !r.Allowed || r.Decision.Modbus == nil || r.Decision.Modbus.SameRules(before) {
		t.Errorf("rules changed: %+v", r)
	}
}

func readExample() (string, error) {
	b, err := readFile("../site/testdata/example-site.yaml")
	return string(b), err
}

func TestReachableAndAccessUntil(t *testing.T) {
	p := examplePolicy(t)
	vendorNet := netip.MustParseAddr("192.0.2.9")
	sat := at(t, "2026-12-05T09:00:00+01:00")
	got := p.Reachable("bob", vendorNet, sat)
	if len(got) != 1 || got[0].Asset != "plc-tank" || got[0].Rule != "vendor-maintenance" {
		t.Fatalf("bob on saturday: %+v", got)
	}
	if until, ok := p.AccessUntil("bob", vendorNet, sat); !ok || !until.Equal(at(t, "2026-12-05T12:00:00+01:00")) {
		t.Errorf("bob's access until %v %t", until, ok)
	}
	if got := p.Reachable("bob", netip.MustParseAddr("198.51.100.1"), sat); len(got) != 0 {
		t.Errorf("bob from outside his networks reaches %+v", got)
	}
	if _, ok := p.AccessUntil("alice", netip.Addr{}, sat); ok {
		t.Error("alice reaches something on saturday")
	}
	if until, ok := p.AccessUntil("carol", netip.Addr{}, sat); !ok || !until.IsZero() {
		t.Errorf("carol's HMI access has no end: %v %t", until, ok)
	}
}
