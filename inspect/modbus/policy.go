package modbus

import (
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// Policy is a compiled, validated Rules value, or a grant's per-unit
// blocks (CompileBlocks); Judge is safe for concurrent use.
type Policy struct {
	name string
	// byUnit is the block that judges each unit id's requests (nil: the
	// unit is not allowed), so picking it costs one load however many
	// blocks a grant has.
	byUnit   [256]*block
	blocks   []*block
	unitList string
}

// block is one compiled Rules value: what a request to one of its units
// may do.
type block struct {
	name      string
	units     []int
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
	b, err := r.compileBlock()
	if err != nil {
		return nil, err
	}
	p := &Policy{name: r.Name, blocks: []*block{b}, unitList: fmt.Sprint(r.Units)}
	for _, u := range r.Units {
		p.byUnit[u] = b
	}
	return p, nil
}

// CompileBlocks validates a grant's per-unit rule blocks (a TCP-to-serial
// gateway's devices behind one address, each with its own functions and
// ranges) and returns their compiled form, named name. A request is
// judged by the one block that lists its unit id; a unit listed by no
// block is denied as a unit outside Rules.Units is. Each block is
// validated as Compile validates a Rules value, and is named in reasons
// and records by name and its units ("plc-gw units 2"); the blocks' own
// Name fields are not used. A unit id in two blocks is an error: which
// block decides must not depend on their order. Unit 0 is an error in
// any block: it is the broadcast address, which a gateway sends on to
// every device behind it, so the block listing it would decide for the
// devices of the other blocks too (a write the drive's block forbids
// would reach the drive as a broadcast the PLC's block allows). Without
// it a broadcast is denied (0A) like any unit in no block.
func CompileBlocks(name string, blocks []Rules) (*Policy, error) {
	p := &Policy{name: name}
	if len(blocks) == 0 {
		return nil, (&Rules{Name: name}).errorf("no blocks, give at least one (units, functions, ranges)")
	}
	type place struct{ block, unit int }
	first := make(map[int]place)
	var all []int
	for i := range blocks {
		r := blocks[i]
		r.Name = blockName(name, r.Units)
		b, err := r.compileBlock()
		if err != nil {
			return nil, (&Rules{Name: name}).errorf("blocks[%d]: %s", i, trimRulesPrefix(err))
		}
		for j, u := range r.Units {
			prev, seen := first[u]
			switch {
			case u == 0:
				return nil, (&Rules{Name: name}).errorf("blocks[%d].units[%d]: %s", i, j, BroadcastInBlock)
			case seen && prev.block != i:
				return nil, (&Rules{Name: name}).errorf("blocks[%d].units[%d]: unit %d is also in blocks[%d].units[%d]; one block judges each unit",
					i, j, u, prev.block, prev.unit)
			case seen:
				continue // listed twice in one block, as Compile allows
			}
			first[u] = place{i, j}
			p.byUnit[u] = b
			all = append(all, u)
		}
		p.blocks = append(p.blocks, b)
	}
	p.unitList = fmt.Sprint(all)
	return p, nil
}

// SameRules reports whether p and o decide every request alike: each
// unit id judged by a block with the same functions, ranges and value
// limits, or by none in both. Only the names (the grant's, which deny
// reasons and records carry) and how the units are grouped into blocks
// may differ.
func (p *Policy) SameRules(o *Policy) bool {
	if p == nil || o == nil {
		return p == o
	}
	same := map[[2]*block]bool{}
	for u := range p.byUnit {
		a, b := p.byUnit[u], o.byUnit[u]
		if a == nil || b == nil {
			if a != b {
				return false
			}
			continue
		}
		eq, seen := same[[2]*block{a, b}]
		if !seen {
			x, y := *a, *b
			x.name, y.name, x.units, y.units = "", "", nil, nil
			eq = reflect.DeepEqual(x, y)
			same[[2]*block{a, b}] = eq
		}
		if !eq {
			return false
		}
	}
	return true
}

// BroadcastInBlock says why unit 0 may not be in a per-unit block.
const BroadcastInBlock = "unit 0 is the broadcast address: the gateway sends it to every device behind it, past the other blocks' rules, so no block may list it (a broadcast is then refused, 0A)"

// blockName names a per-unit block in deny reasons and records: the
// grant's name and the block's units, "plc-gw units 1,3".
func blockName(grant string, units []int) string { return grant + " " + unitsText(units) }

// unitsText renders units as "units 1,3".
func unitsText(units []int) string {
	parts := make([]string, len(units))
	for i, u := range units {
		parts[i] = strconv.Itoa(u)
	}
	return "units " + strings.Join(parts, ",")
}

// compileBlock validates r and compiles it as one block.
func (r *Rules) compileBlock() (*block, error) {
	p := &block{name: r.Name, units: slices.Clone(r.Units), diagSubs: map[uint16]bool{}}
	if len(r.Units) == 0 {
		return nil, r.errorf("units: empty, list the unit ids allowed (0-255)")
	}
	for i, u := range r.Units {
		if u < 0 || u > 255 {
			return nil, r.errorf("units[%d]: %d out of range 0..255", i, u)
		}
	}
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
	n, err := parseFunctionCode(name)
	if err != nil {
		return nil, err
	}
	if n < 0 {
		return nil, fmt.Errorf("unknown function %q (want read-only, read-write, diagnostics, programming, a function name like write-single-register, or a code 1..127)", name)
	}
	if Function(n).Class() == ClassInvalid {
		return nil, fmt.Errorf("function code %d is not a request function (valid: 1..127)", n)
	}
	return []Op{{Function: Function(n)}}, nil
}

// parseFunctionCode reads a function code written as a number: decimal
// ("16") or hexadecimal with 0x ("0x10", as Modbus documents write them).
// It returns -1 for a name that is not a number at all. A decimal with a
// leading zero is an error: YAML 1.1 readers, and strconv's base 0, take
// "017" for octal 15 (write multiple coils) where the writer most likely
// meant 17 (report server id); a grant must not allow a function other
// than the one its text seems to name. So are underscores, signs and the
// 0o and 0b prefixes.
func parseFunctionCode(name string) (int, error) {
	if name == "" {
		return -1, nil
	}
	if hex, ok := strings.CutPrefix(strings.ToLower(name), "0x"); ok {
		n, err := strconv.ParseUint(hex, 16, 8)
		if err != nil || hex == "" || strings.ContainsAny(hex, "+-_") {
			return 0, fmt.Errorf("function code %q is not a hexadecimal number in 0x00..0xff", name)
		}
		return int(n), nil
	}
	if strings.Trim(name, "0123456789") != "" {
		if strings.Trim(name, "0123456789+-_oObB") == "" && strings.ContainsAny(name, "0123456789") {
			return 0, fmt.Errorf("function code %q: write it in decimal (16) or hexadecimal (0x10)", name)
		}
		return -1, nil
	}
	if len(name) > 1 && name[0] == '0' {
		return 0, fmt.Errorf("function code %q has a leading zero, which YAML and octal notation read as %s; write the decimal number without it, or hexadecimal with 0x", name, octalText(name))
	}
	n, err := strconv.ParseUint(name, 10, 8)
	if err != nil {
		return 0, fmt.Errorf("function code %s is not a request function (valid: 1..127)", name)
	}
	return int(n), nil
}

// octalText says what a leading-zero number means in octal.
func octalText(s string) string {
	if n, err := strconv.ParseUint(s, 8, 16); err == nil {
		return fmt.Sprintf("octal %d", n)
	}
	return "octal (not a valid one)"
}

// trimRulesPrefix drops the `modbus rules "name": ` prefix of a block's
// error: the grant's own prefix and the block index say where.
func trimRulesPrefix(err error) string {
	s := strings.TrimPrefix(err.Error(), "modbus rules")
	if rest, ok := strings.CutPrefix(s, " "); ok && strings.HasPrefix(rest, `"`) {
		if q, err := strconv.QuotedPrefix(rest); err == nil {
			s = rest[len(q):]
		}
	}
	return strings.TrimPrefix(s, ": ")
}

// Describe renders the rules for people (otgate explain), one line per
// block, in the site file's words:
//
//	units 1: functions [read-write]; holding-registers read 0-99 write 50-55; limit holding-registers 52: 0..100
//
// A grant with per-unit blocks has a line for each, named as its deny
// reasons name it ("plc-gw units 2: ...").
func (p *Policy) Describe() []string {
	out := make([]string, len(p.blocks))
	for i, b := range p.blocks {
		var s strings.Builder
		if len(p.blocks) == 1 && b.name == p.name {
			s.WriteString(unitsText(b.units))
		} else {
			s.WriteString(b.name)
		}
		s.WriteString(": functions " + b.funcList)
		for _, tb := range describedTables {
			r, w := b.read[tb.t], b.write[tb.t]
			if len(r) == 0 && len(w) == 0 {
				continue
			}
			s.WriteString("; " + tb.name)
			if len(r) > 0 {
				s.WriteString(" read " + r.String())
			}
			if len(w) > 0 {
				s.WriteString(" write " + w.String())
			}
		}
		for _, l := range b.limits {
			fmt.Fprintf(&s, "; limit holding-registers %s: %d..%d", l.Registers, l.Min, l.Max)
			if l.Signed {
				s.WriteString(" signed")
			}
		}
		out[i] = s.String()
	}
	return out
}

var describedTables = []struct {
	name string
	t    Table
}{
	{"coils", TableCoils},
	{"discrete-inputs", TableDiscreteInputs},
	{"holding-registers", TableHoldingRegisters},
	{"input-registers", TableInputRegisters},
}
