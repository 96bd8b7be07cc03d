package modbus

import "testing"

// SameRules: two grants' rules that decide alike are the same whatever
// their names; any difference in what a request may do is not.
func TestSameRules(t *testing.T) {
	base := func(name string) Rules {
		return Rules{Name: name, Units: []int{1}, Functions: []string{"read-write"},
			HoldingRegisters: TableRanges{Read: []Range{{0, 99}}, Write: []Range{{50, 55}}},
			Limits:           []ValueLimit{{Registers: Range{50, 55}, Min: 0, Max: 100}}}
	}
	compile := func(r Rules) *Policy {
		t.Helper()
		p, err := r.Compile()
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	blocks := func(name string, b ...Rules) *Policy {
		t.Helper()
		p, err := CompileBlocks(name, b)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	day := compile(base("day"))
	if !day.SameRules(compile(base("late"))) {
		t.Error("the same rules under another grant's name: not the same")
	}
	for name, change := range map[string]func(*Rules){
		"another unit":        func(r *Rules) { r.Units = []int{2} },
		"another function":    func(r *Rules) { r.Functions = []string{"read-only"} },
		"a wider read range":  func(r *Rules) { r.HoldingRegisters.Read = []Range{{0, 100}} },
		"another write range": func(r *Rules) { r.HoldingRegisters.Write = []Range{{50, 56}} },
		"another value limit": func(r *Rules) { r.Limits[0].Max = 101 },
		"no value limit":      func(r *Rules) { r.Limits = nil },
		"coils too":           func(r *Rules) { r.Coils = TableRanges{Read: []Range{{0, 9}}} },
	} {
		r := base("late")
		r.Limits = append([]ValueLimit(nil), r.Limits...)
		change(&r)
		if day.SameRules(compile(r)) {
			t.Errorf("%s: taken for the same rules", name)
		}
	}
	one := Rules{Units: []int{1}, Functions: []string{"read-only"}}
	two := Rules{Units: []int{2}, Functions: []string{"read-write"}}
	if !blocks("day", one, two).SameRules(blocks("late", one, two)) {
		t.Error("the same blocks under another name: not the same")
	}
	if !blocks("day", one, two).SameRules(blocks("late", two, one)) {
		t.Error("the same blocks in another order (each unit judged alike): not the same")
	}
	if !blocks("day", one).SameRules(compile(Rules{Name: "late", Units: []int{1}, Functions: []string{"read-only"}})) {
		t.Error("one block and the same single rules: not the same")
	}
	swapped := []Rules{{Units: []int{2}, Functions: []string{"read-only"}}, {Units: []int{1}, Functions: []string{"read-write"}}}
	if blocks("day", one, two).SameRules(blocks("late", swapped...)) {
		t.Error("the units swapped between the rule sets taken for the same")
	}
	if blocks("day", one).SameRules(blocks("late", one, two)) {
		t.Error("a unit more taken for the same")
	}
	if day.SameRules(nil) || !(*Policy)(nil).SameRules(nil) {
		t.Error("nil: only nil is the same as nil")
	}
}
