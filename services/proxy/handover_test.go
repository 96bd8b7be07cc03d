package proxy

import (
	"testing"
	"time"

	"github.com/otgate/otgate/inspect/modbus"
)

// scripted decides by time: the decision of the last step whose from is
// not after the request's time.
type scripted []scriptStep

type scriptStep struct {
	from time.Time
	d    Decision
}

func (s scripted) Decide(r DecisionRequest) Decision {
	var out Decision
	for _, x := range s {
		if !r.Time.Before(x.from) {
			out = x.d
		}
	}
	return out
}

// holdingRules compiles read-write rules for unit 1: holding registers
// 0-readLast readable, first-last writable.
func holdingRules(t *testing.T, name string, readLast, first, last uint16) *modbus.Policy {
	t.Helper()
	p, err := (&modbus.Rules{Name: name, Units: []int{1}, Functions: []string{"read-write"},
		HoldingRegisters: modbus.TableRanges{Read: []modbus.Range{{First: 0, Last: readLast}}, Write: []modbus.Range{{First: first, Last: last}}}}).Compile()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// sessionSpan carries a session across each grant that can take it over
// (for Modbus, with whatever rules it has), and stops at the first edge
// where the next decision denies, bounds a session's length or, for
// Modbus, has no rules.
func TestSessionSpan(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 6, 0, 0, 0, time.UTC)
	t1, t2, t3 := t0.Add(8*time.Hour), t0.Add(16*time.Hour), t0.Add(24*time.Hour)
	rules := func(name string, write uint16) *modbus.Policy { return holdingRules(t, name, 99, 50, write) }
	allow := func(rule string, until time.Time) Decision { return Decision{Allow: true, Rule: rule, Until: until} }
	modbusAllow := func(rule string, until time.Time, p *modbus.Policy) Decision {
		d := allow(rule, until)
		d.Modbus = p
		return d
	}
	step := func(from time.Time, d Decision) scriptStep { return scriptStep{from, d} }
	deny := Decision{Rule: "default-deny", Until: t3}
	for _, c := range []struct {
		name     string
		protocol string
		script   scripted
		want     time.Time
	}{
		{"two shifts, then nothing", "tcp", scripted{step(t0, allow("day", t1)), step(t1, allow("late", t2)), step(t2, deny)}, t2},
		{"the next grant has no end", "tcp", scripted{step(t0, allow("day", t1)), step(t1, allow("always", time.Time{}))}, time.Time{}},
		{"a deny at the edge", "tcp", scripted{step(t0, allow("day", t1)), step(t1, deny)}, t1},
		{"the next grant bounds a session", "tcp", scripted{step(t0, allow("day", t1)), step(t1, Decision{Allow: true, Rule: "late", Until: t2, MaxSession: time.Hour})}, t1},
		{"the first grant bounds a session", "tcp", scripted{step(t0, Decision{Allow: true, Rule: "day", Until: t1, MaxSession: 10 * time.Hour}), step(t1, allow("late", t2))}, t1},
		{"the zone's mode differs", "tcp", scripted{step(t0, allow("day", t1)), step(t1, Decision{Allow: true, Rule: "late", Until: t2, Monitor: true}), step(t2, deny)}, t2},
		{"modbus, the same rules, then other rules, under other grants", "modbus", scripted{
			step(t0, modbusAllow("day", t1, rules("day", 55))), step(t1, modbusAllow("late", t2, rules("late", 55))),
			step(t2, modbusAllow("night", t3, rules("night", 56)))}, t3},
		{"modbus, other rules at the first edge", "modbus", scripted{
			step(t0, modbusAllow("day", t1, rules("day", 55))), step(t1, modbusAllow("late", t2, rules("late", 99))), step(t2, deny)}, t2},
		{"modbus, a grant without rules at the edge", "modbus", scripted{
			step(t0, modbusAllow("day", t1, rules("day", 55))), step(t1, allow("late", t2))}, t1},
		{"modbus, monitor mode at the edge", "modbus", scripted{
			step(t0, modbusAllow("day", t1, rules("day", 55))), step(t1, Decision{Allow: true, Rule: "late", Until: t2, Monitor: true, Modbus: rules("late", 55)}), step(t2, deny)}, t2},
	} {
		t.Run(c.name, func(t *testing.T) {
			req := DecisionRequest{User: "alice", Asset: "plc-1", Protocol: c.protocol, Time: t0.Add(time.Hour)}
			d := c.script.Decide(req)
			if got := sessionSpan(c.script, req, d); !got.Equal(c.want) {
				t.Errorf("span %v, want %v", got, c.want)
			}
		})
	}
}
