package policy

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/otgate/otgate/site"
)

// The explain property test builds random sites over several users (one
// in two roles), assets in two zones and assets serving two protocols,
// and checks that Explain tells the same story as Decide, for every user,
// asset and protocol at random instants:
//   - a deciding grant is listed as matching and applying now;
//   - a deny grant listed as applying now that covers the protocol makes
//     the decision a deny (an explicit deny wins, for every combination of
//     user or role subject and asset or zone target);
//   - an allow decision is made by the most specific applying allow grant
//     covering the protocol (asset over zone, user over role, file order);
//   - no applying allow grant covering the protocol: default-deny;
//   - an allow decision ends no later than its grant's schedule does
//     (Change), nor later than the next start of a deny grant that covers
//     the protocol.

const explainBase = `site: test
zones:
  - {name: cell-1, owner: ot, mode: enforce, interface: eth1, subnet: 10.77.0.0/24, gate_address: 10.77.0.1}
  - {name: cell-2, owner: ot, mode: enforce, interface: eth1, vlan: 2, subnet: 10.78.0.0/24, gate_address: 10.78.0.1}
assets:
  - {name: plc-tank, zone: cell-1, address: 10.77.0.20, services: [{protocol: modbus}]}
  - {name: hmi-1, zone: cell-1, address: 10.77.0.30, services: [{protocol: https}, {protocol: modbus}]}
  - {name: plc-2, zone: cell-2, address: 10.78.0.20, services: [{protocol: modbus}, {protocol: https}]}
roles:
  - {name: engineer}
  - {name: operator}
users:
  - {name: alice, roles: [engineer]}
  - {name: erin, roles: [engineer, operator]}
  - {name: olga, roles: [operator]}
maintenance_windows:
  - {name: mw-0, start: 2026-10-24T20:00:00Z, end: 2026-10-25T04:00:00Z, assets: [plc-tank]}
grants:
`

func randomExplainGrants(r *rand.Rand) string {
	pick := func(from []string) []string {
		var out []string
		for _, x := range from {
			if r.IntN(2) == 0 {
				out = append(out, x)
			}
		}
		if len(out) == 0 {
			out = []string{from[r.IntN(len(from))]}
		}
		return out
	}
	var b strings.Builder
	for i := range 2 + r.IntN(5) {
		deny := r.IntN(3) == 0
		fmt.Fprintf(&b, "  - name: g%d\n", i)
		if deny {
			b.WriteString("    effect: deny\n")
		}
		var subj []string
		if r.IntN(2) == 0 {
			subj = append(subj, "users: ["+strings.Join(pick([]string{"alice", "erin", "olga"}), ", ")+"]")
		}
		if len(subj) == 0 || r.IntN(2) == 0 {
			subj = append(subj, "roles: ["+strings.Join(pick([]string{"engineer", "operator"}), ", ")+"]")
		}
		fmt.Fprintf(&b, "    subjects: {%s}\n", strings.Join(subj, ", "))
		var targ []string
		if r.IntN(2) == 0 {
			targ = append(targ, "assets: ["+strings.Join(pick([]string{"plc-tank", "hmi-1", "plc-2"}), ", ")+"]")
		}
		if len(targ) == 0 || r.IntN(2) == 0 {
			targ = append(targ, "zones: ["+strings.Join(pick([]string{"cell-1", "cell-2"}), ", ")+"]")
		}
		fmt.Fprintf(&b, "    targets: {%s}\n", strings.Join(targ, ", "))
		protos := []string{"modbus", "https"}[r.IntN(2):]
		if r.IntN(2) == 0 {
			protos = []string{"modbus"}
		}
		if !deny || r.IntN(2) == 0 {
			fmt.Fprintf(&b, "    protocols: [%s]\n", strings.Join(protos, ", "))
		}
		if r.IntN(3) > 0 {
			fmt.Fprintf(&b, "    time_zone: %s\n    windows:\n", zones[r.IntN(len(zones))])
			for range 1 + r.IntN(2) {
				s := pickClock(r, false)
				e := pickClock(r, true)
				if e == s {
					e = (s + 60) % 1440
				}
				if s == 0 && e == 0 {
					e = 1440
				}
				fmt.Fprintf(&b, "      - {days: [%s], hours: [\"%s-%s\"]}\n", strings.Join(pick([]string{"mon", "tue", "wed", "thu", "fri", "sat", "sun"}), ", "), clock(s), clock(e))
			}
		}
		if r.IntN(4) == 0 {
			b.WriteString("    maintenance: [mw-0]\n")
		}
		if !deny && protos[0] == "modbus" {
			b.WriteString("    modbus: {units: [1], functions: [read-only], holding-registers: {read: [\"0-9\"]}}\n")
		}
	}
	return b.String()
}

func TestExplainAgreesWithDecide(t *testing.T) {
	seed := uint64(20261123)
	if v := os.Getenv("POLICY_SEED"); v != "" {
		seed, _ = strconv.ParseUint(v, 10, 64)
	}
	trials := 150
	if testing.Short() {
		trials = 30
	}
	r := rand.New(rand.NewPCG(seed, 2))
	checked := map[string]int{}
	for trial := range trials {
		extra := randomExplainGrants(r)
		s, err := site.Parse("random.yaml", []byte(explainBase+extra), site.Options{Now: now})
		if err != nil {
			// Some random grants name a protocol none of their targets
			// serve; the loader rightly refuses those.
			continue
		}
		p, err := Compile(s)
		if err != nil {
			t.Fatal(err)
		}
		fail := func(format string, args ...any) {
			t.Helper()
			t.Fatalf("seed %d (POLICY_SEED=%d) trial %d: %s\nsite:\n%s", seed, seed, trial, fmt.Sprintf(format, args...), extra)
		}
		for range 3 {
			tm := randomTime(r)
			for _, user := range []string{"alice", "erin", "olga"} {
				for _, asset := range []string{"plc-tank", "hmi-1", "plc-2"} {
					e, err := p.Explain(user, asset, tm)
					if err != nil {
						fail("explain %s %s: %v", user, asset, err)
					}
					checks := map[string]GrantCheck{}
					for _, c := range e.Grants {
						checks[c.Grant] = c
					}
					for _, pd := range e.Decisions {
						d := pd.Decision
						if got := p.Decide(Request{User: user, Asset: asset, Protocol: pd.Protocol, Time: tm}); got.Rule != d.Rule || got.Allow != d.Allow || !got.Until.Equal(d.Until) {
							fail("%s %s %s at %s: Explain decides %+v, Decide %+v", user, asset, pd.Protocol, tm, d, got)
						}
						// The expected rule from the grant checks alone.
						want, wantScore := RuleDefaultDeny, -1
						for i := range s.Access.Grants {
							g := &s.Access.Grants[i]
							c := checks[g.Name]
							covers := len(g.Protocols) == 0
							for _, pr := range g.Protocols {
								covers = covers || pr == pd.Protocol
							}
							if !c.Matches || !c.Active || !covers {
								continue
							}
							if g.Effect == site.EffectDeny {
								want = g.Name
								break
							}
							score := 0
							for _, a := range g.Assets {
								if a == asset {
									score += 2
								}
							}
							for _, u := range g.Users {
								if u == user {
									score++
								}
							}
							if score > wantScore {
								want, wantScore = g.Name, score
							}
						}
						if d.Rule != want {
							fail("%s %s %s at %s: Decide says %q (%s); the grant checks of Explain say %q\nchecks: %+v", user, asset, pd.Protocol, tm.Format(time.RFC3339), d.Rule, d.Reason, want, e.Grants)
						}
						checked[fmt.Sprint(d.Allow)]++
						if !d.Allow {
							continue
						}
						bound := func(what string, b time.Time) {
							if !b.IsZero() && (d.Until.IsZero() || d.Until.After(b)) {
								fail("%s %s %s at %s: allowed by %q until %v, past %s at %s", user, asset, pd.Protocol, tm.Format(time.RFC3339), d.Rule, d.Until, what, b.Format(time.RFC3339))
							}
						}
						bound("the end of its grant's schedule", checks[d.Rule].Change)
						for i := range s.Access.Grants {
							g := &s.Access.Grants[i]
							c := checks[g.Name]
							covers := len(g.Protocols) == 0
							for _, pr := range g.Protocols {
								covers = covers || pr == pd.Protocol
							}
							if g.Effect == site.EffectDeny && c.Matches && covers {
								bound("the start of deny grant "+g.Name, c.Change)
							}
						}
					}
				}
			}
		}
	}
	if checked["true"] == 0 || checked["false"] == 0 {
		t.Fatalf("the generated sites never allowed or never denied: %v", checked)
	}
}
