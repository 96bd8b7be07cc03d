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

// The property test builds random sites (grants with random windows,
// dates, maintenance windows, deny grants and time zones with odd DST
// rules) and checks Decide against an oracle written independently of
// schedule.go: the oracle reads wall clocks minute by minute instead of
// resolving local times to instants.
//
// Properties, at random instants biased toward DST changes:
//   - Decide(t) names the rule the oracle names (deny wins, default deny);
//   - the oracle gives the same rule everywhere sampled in [t, Until);
//   - the oracle gives another rule at Until;
//   - with no Until, nothing changes at sampled points within Horizon.
//
// The seed is fixed (POLICY_SEED overrides it) and printed on failure
// together with the failing site.

var zones = []string{"Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "UTC", "Asia/Kolkata"}

func clock(m int) string { return fmt.Sprintf("%02d:%02d", m/60, m%60) }

func randomGrants(r *rand.Rand) string {
	var b strings.Builder
	b.WriteString("maintenance_windows:\n")
	base := time.Date(2026, 3, 20, 0, 0, 0, 0, time.UTC)
	for i := range 2 {
		start := base.Add(time.Duration(r.IntN(240*24)) * time.Hour).Add(time.Duration(r.IntN(4)) * 15 * time.Minute)
		end := start.Add(time.Duration(1+r.IntN(72)) * time.Hour)
		fmt.Fprintf(&b, "  - {name: mw-%d, start: %s, end: %s, zones: [cell-1]}\n", i, start.Format(time.RFC3339), end.Format(time.RFC3339))
	}
	b.WriteString("grants:\n")
	n := 1 + r.IntN(5)
	for i := range n {
		deny := r.IntN(4) == 0
		fmt.Fprintf(&b, "  - name: g%d\n", i)
		if deny {
			b.WriteString("    effect: deny\n")
		}
		if r.IntN(2) == 0 {
			b.WriteString("    subjects: {users: [alice]}\n")
		} else {
			b.WriteString("    subjects: {roles: [engineer]}\n")
		}
		if r.IntN(2) == 0 {
			b.WriteString("    targets: {assets: [plc-tank]}\n")
		} else {
			b.WriteString("    targets: {zones: [cell-1]}\n")
		}
		if !deny || r.IntN(2) == 0 {
			b.WriteString("    protocols: [modbus]\n")
		}
		timed := false
		if nw := r.IntN(3); nw > 0 {
			timed = true
			b.WriteString("    windows:\n")
			for range nw {
				var days []string
				for _, d := range []string{"mon", "tue", "wed", "thu", "fri", "sat", "sun"} {
					if r.IntN(2) == 0 {
						days = append(days, d)
					}
				}
				var hours []string
				for range 1 + r.IntN(2) {
					s, e := pickClock(r, false), pickClock(r, true)
					if e == s {
						e = (s + 90) % 1440
					}
					if e == 0 && s == 0 {
						e = 1440
					}
					hours = append(hours, `"`+clock(s)+"-"+clock(e)+`"`)
				}
				b.WriteString("      - {")
				if len(days) > 0 {
					fmt.Fprintf(&b, "days: [%s], ", strings.Join(days, ", "))
				}
				fmt.Fprintf(&b, "hours: [%s]}\n", strings.Join(hours, ", "))
			}
		}
		if r.IntN(3) == 0 {
			timed = true
			from := time.Date(2026, 3, 15+r.IntN(240), 0, 0, 0, 0, time.UTC)
			until := from.AddDate(0, 0, r.IntN(20))
			fmt.Fprintf(&b, "    dates: [{from: %s, until: %s}]\n", from.Format("2006-01-02"), until.Format("2006-01-02"))
		}
		if timed {
			fmt.Fprintf(&b, "    time_zone: %s\n", zones[r.IntN(len(zones))])
		}
		if r.IntN(3) == 0 {
			fmt.Fprintf(&b, "    maintenance: [mw-%d]\n", r.IntN(2))
		}
		if !deny {
			b.WriteString("    modbus: {units: [1], functions: [read-only], holding-registers: {read: [\"0-9\"]}}\n")
		}
	}
	return b.String()
}

// pickClock picks a range edge in minutes, near the hours clocks change
// at half of the time.
func pickClock(r *rand.Rand, end bool) int {
	if r.IntN(2) == 0 {
		near := []int{60, 90, 120, 135, 150, 165, 180, 210}
		return near[r.IntN(len(near))]
	}
	if end {
		return r.IntN(97) * 15
	}
	return r.IntN(96) * 15
}

// randomTime is a random instant, near a DST change half of the time.
func randomTime(r *rand.Rand) time.Time {
	changes := []string{"2026-03-29T01:00:00Z", "2026-10-25T01:00:00Z", "2026-03-08T07:00:00Z", "2026-11-01T06:00:00Z", "2026-04-04T15:00:00Z", "2026-10-03T15:30:00Z"}
	if r.IntN(2) == 0 {
		c, _ := time.Parse(time.RFC3339, changes[r.IntN(len(changes))])
		return c.Add(time.Duration(r.Int64N(int64(36*time.Hour))) - 18*time.Hour)
	}
	return time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(r.Int64N(int64(260 * 24 * time.Hour))))
}

// oracleActive says whether grant g applies to plc-tank at t, reading wall
// clocks: a local time W has been reached at t when the wall clock showed
// W or later at some instant of the last three hours up to t.
func oracleActive(g *site.Grant, mws []site.MaintenanceWindow, t time.Time) bool {
	loc := time.UTC
	if g.TimeZone != "" {
		loc, _ = time.LoadLocation(g.TimeZone)
	}
	reached := time.Time{} // highest wall reading (to the minute) in [t-3h, t]
	for k := 0; k <= 180; k++ {
		l := t.Add(-time.Duration(k) * time.Minute).In(loc)
		w := time.Date(l.Year(), l.Month(), l.Day(), l.Hour(), l.Minute(), 0, 0, time.UTC)
		if w.After(reached) {
			reached = w
		}
	}
	inDates := len(g.Dates) == 0
	for _, d := range g.Dates {
		from := time.Date(d.From.Year, d.From.Month, d.From.Day, 0, 0, 0, 0, time.UTC)
		until := time.Date(d.Until.Year, d.Until.Month, d.Until.Day+1, 0, 0, 0, 0, time.UTC)
		if !reached.Before(from) && reached.Before(until) {
			inDates = true
		}
	}
	if !inDates {
		return false
	}
	if len(g.Windows) == 0 && len(g.Maintenance) == 0 {
		return true
	}
	today := time.Date(reached.Year(), reached.Month(), reached.Day(), 0, 0, 0, 0, time.UTC)
	for _, day := range []time.Time{today.AddDate(0, 0, -1), today} {
		for _, w := range g.Windows {
			if !w.HasDay(day.Weekday()) {
				continue
			}
			for _, h := range w.Hours {
				end := h.End
				if end <= h.Start {
					end += 1440
				}
				ws, we := day.Add(time.Duration(h.Start)*time.Minute), day.Add(time.Duration(end)*time.Minute)
				if !reached.Before(ws) && reached.Before(we) {
					return true
				}
			}
		}
	}
	for _, name := range g.Maintenance {
		for _, mw := range mws {
			if mw.Name == name && !t.Before(mw.Start) && t.Before(mw.End) {
				return true
			}
		}
	}
	return false
}

// oracleRule is the rule deciding alice's modbus access to plc-tank at t.
func oracleRule(s *site.Site, t time.Time) string {
	best, bestScore := "default-deny", -1
	for i := range s.Access.Grants {
		g := &s.Access.Grants[i]
		if !oracleActive(g, s.Access.MaintenanceWindows, t) {
			continue
		}
		if g.Effect == site.EffectDeny {
			return g.Name
		}
		score := 0
		if len(g.Assets) > 0 {
			score += 2
		}
		if len(g.Users) > 0 {
			score++
		}
		if score > bestScore {
			best, bestScore = g.Name, score
		}
	}
	return best
}

func TestDecideProperties(t *testing.T) {
	seed := uint64(20261122)
	if v := os.Getenv("POLICY_SEED"); v != "" {
		seed, _ = strconv.ParseUint(v, 10, 64)
	}
	trials := 300
	if testing.Short() {
		trials = 60
	}
	r := rand.New(rand.NewPCG(seed, 1))
	for trial := range trials {
		extra := randomGrants(r)
		s, err := site.Parse("random.yaml", []byte(baseSite+extra), site.Options{Now: now})
		if err != nil {
			t.Fatalf("seed %d trial %d: random site rejected: %v\n%s", seed, trial, err, extra)
		}
		p, err := Compile(s)
		if err != nil {
			t.Fatal(err)
		}
		fail := func(format string, args ...any) {
			t.Helper()
			t.Fatalf("seed %d (POLICY_SEED=%d) trial %d: %s\nsite:\n%s", seed, seed, trial, fmt.Sprintf(format, args...), extra)
		}
		for range 4 {
			tm := randomTime(r)
			d := p.Decide(Request{User: "alice", Asset: "plc-tank", Protocol: "modbus", Time: tm})
			if want := oracleRule(s, tm); d.Rule != want {
				fail("at %s Decide says %q (%s), the oracle %q", tm.Format(time.RFC3339Nano), d.Rule, d.Reason, want)
			}
			if d.Allow != (d.Rule != "default-deny" && mustGrant(s, d.Rule).Effect == site.EffectAllow) {
				fail("at %s allow %t with rule %q", tm, d.Allow, d.Rule)
			}
			end := d.Until
			if end.IsZero() {
				end = tm.Add(Horizon)
			} else {
				if !end.After(tm) || end.After(tm.Add(Horizon)) {
					fail("at %s Until %s is not in (t, t+Horizon]", tm, end)
				}
				if got := oracleRule(s, end); got == d.Rule {
					fail("at %s rule %q until %s, but the oracle still says %q at Until", tm.Format(time.RFC3339), d.Rule, end.Format(time.RFC3339), got)
				}
			}
			span := end.Sub(tm)
			samples := []time.Duration{0, span - time.Nanosecond, span - time.Second, span / 2}
			for range 12 {
				samples = append(samples, time.Duration(r.Int64N(int64(span))))
			}
			for _, off := range samples {
				if off < 0 || off >= span {
					continue
				}
				if got := oracleRule(s, tm.Add(off)); got != d.Rule {
					fail("at %s rule %q until %v, but the oracle says %q at %s", tm.Format(time.RFC3339), d.Rule, d.Until, got, tm.Add(off).Format(time.RFC3339Nano))
				}
			}
		}
	}
}

func mustGrant(s *site.Site, name string) *site.Grant {
	g, ok := s.Access.GrantByName(name)
	if !ok {
		panic("no grant " + name)
	}
	return g
}
