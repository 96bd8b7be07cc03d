package modbus

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Policy is a compiled, validated Rules value; Judge is safe for
// concurrent use.
type Policy struct {
	name      string
	units     [256]bool
	unitList  string
	funcs     [256]bool // every sub-function allowed
	diagSubs  map[uint16]bool
	meiTypes  [256]bool
	funcList  string
	read      [TableFileRecords]rangeSet
	write     [TableFileRecords]rangeSet
	limits    []ValueLimit
	hasLimits bool
}

type rangeSet []Range // sorted, merged

func (s rangeSet) covers(first uint16, count uint16) bool {
	last := int(first) + int(count) - 1
	for _, r := range s {
		if first >= r.First && last <= int(r.Last) {
			return true
		}
	}
	return false
}

func (s rangeSet) String() string {
	if len(s) == 0 {
		return "none"
	}
	parts := make([]string, len(s))
	for i, r := range s {
		parts[i] = r.String()
	}
	return strings.Join(parts, ",")
}

func mergeRanges(in []Range) rangeSet {
	s := slices.Clone(in)
	slices.SortFunc(s, func(a, b Range) int { return int(a.First) - int(b.First) })
	var out rangeSet
	for _, r := range s {
		if n := len(out); n > 0 && int(r.First) <= int(out[n-1].Last)+1 {
			out[n-1].Last = max(out[n-1].Last, r.Last)
			continue
		}
		out = append(out, r)
	}
	return out
}

// Compile validates r and returns its compiled form.
func (r *Rules) Compile() (*Policy, error) {
	p := &Policy{name: r.Name, diagSubs: map[uint16]bool{}}
	if len(r.Units) == 0 {
		return nil, r.errorf("units: empty, list the unit ids allowed (0-255)")
	}
	for i, u := range r.Units {
		if u < 0 || u > 255 {
			return nil, r.errorf("units[%d]: %d out of range 0..255", i, u)
		}
		p.units[u] = true
	}
	p.unitList = fmt.Sprint(r.Units)
	if len(r.Functions) == 0 {
		return nil, r.errorf("functions: empty, list named sets (read-only, read-write, diagnostics, programming), function names or codes")
	}
	for i, name := range r.Functions {
		ops, err := functionOps(name)
		if err != nil {
			return nil, r.errorf("functions[%d]: %w", i, err)
		}
		for _, op := range ops {
			switch {
			case !op.HasSub:
				p.funcs[op.Function] = true
			case op.Function == FuncDiagnostics:
				p.diagSubs[op.Sub] = true
			default:
				p.meiTypes[op.Sub] = true
			}
		}
	}
	p.funcList = "[" + strings.Join(r.Functions, " ") + "]"
	tables := []struct {
		name     string
		t        Table
		tr       TableRanges
		readOnly bool
	}{
		{"coils", TableCoils, r.Coils, false},
		{"discrete-inputs", TableDiscreteInputs, r.DiscreteInputs, true},
		{"holding-registers", TableHoldingRegisters, r.HoldingRegisters, false},
		{"input-registers", TableInputRegisters, r.InputRegisters, true},
	}
	for _, tb := range tables {
		if tb.readOnly && len(tb.tr.Write) > 0 {
			return nil, r.errorf("%s.write: %s are read-only in Modbus, remove the write ranges", tb.name, tb.name)
		}
		for i, rg := range append(slices.Clone(tb.tr.Read), tb.tr.Write...) {
			if rg.First > rg.Last {
				kind, j := "read", i
				if i >= len(tb.tr.Read) {
					kind, j = "write", i-len(tb.tr.Read)
				}
				return nil, r.errorf("%s.%s[%d]: first address %d is after last address %d", tb.name, kind, j, rg.First, rg.Last)
			}
		}
		p.read[tb.t] = mergeRanges(tb.tr.Read)
		p.write[tb.t] = mergeRanges(tb.tr.Write)
	}
	for i, l := range r.Limits {
		lo, hi := 0, 65535
		if l.Signed {
			lo, hi = -32768, 32767
		}
		switch {
		case l.Registers.First > l.Registers.Last:
			return nil, r.errorf("limits[%d].registers: first address %d is after last address %d", i, l.Registers.First, l.Registers.Last)
		case l.Min < lo || l.Min > hi:
			return nil, r.errorf("limits[%d].min: %d out of range %d..%d (signed: %t)", i, l.Min, lo, hi, l.Signed)
		case l.Max < lo || l.Max > hi:
			return nil, r.errorf("limits[%d].max: %d out of range %d..%d (signed: %t)", i, l.Max, lo, hi, l.Signed)
		case l.Min > l.Max:
			return nil, r.errorf("limits[%d]: min %d is greater than max %d", i, l.Min, l.Max)
		}
	}
	p.limits = slices.Clone(r.Limits)
	p.hasLimits = len(p.limits) > 0
	return p, nil
}

// functionOps resolves one entry of Rules.Functions.
func functionOps(name string) ([]Op, error) {
	if ops, ok := FunctionSets[name]; ok {
		return ops, nil
	}
	if f, ok := FunctionByName(name); ok {
		return []Op{{Function: f}}, nil
	}
	if n, err := strconv.ParseUint(name, 0, 8); err == nil {
		if Function(n).Class() == ClassInvalid {
			return nil, fmt.Errorf("function code %d is not a request function (valid: 1..127)", n)
		}
		return []Op{{Function: Function(n)}}, nil
	}
	return nil, fmt.Errorf("unknown function %q (want read-only, read-write, diagnostics, programming, a function name like write-single-register, or a code 1..127)", name)
}
