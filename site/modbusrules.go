package site

import (
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/otgate/otgate/inspect/modbus"
)

// decodeModbusRules reads a grant's modbus: rules node by node (so every
// problem has its line and field), then has inspect/modbus check the
// whole (its Compile is the single definition of what is valid). It reads
// the single mapping and each block of the list form alike.
func decodeModbusRules(d *decoder, n *yaml.Node, p, grant string) (*modbus.Rules, bool) {
	f := d.fields(n, p, "units", "functions", "coils", "discrete-inputs", "holding-registers", "input-registers", "limits")
	d.require(n, p, f, "units", "functions")
	if f == nil {
		return nil, false
	}
	r := &modbus.Rules{Name: grant}
	// A missing required field is reported once, by require: the whole
	// check at the end would only say it again.
	ok := f["units"] != nil && f["functions"] != nil
	if v, has := f["units"]; has {
		up := join(p, "units")
		items := d.list(v, up)
		if len(items) == 0 {
			d.nodeErrorf(v, up, "want at least one unit id (0..255)")
			ok = false
		}
		for i, it := range items {
			u, good := d.integer(it, index(up, i), 0, 255)
			ok = ok && good
			r.Units = append(r.Units, u)
		}
	}
	if v, has := f["functions"]; has {
		fp := join(p, "functions")
		items := d.list(v, fp)
		if len(items) == 0 {
			d.nodeErrorf(v, fp, "want at least one function set, name or code")
			ok = false
		}
		for i, it := range items {
			s, good := d.scalar(it, index(fp, i), "a function set, name or code", "!!str", "!!int")
			if good {
				probe := modbus.Rules{Units: []int{0}, Functions: []string{s}}
				if _, err := probe.Compile(); err != nil {
					d.nodeErrorf(it, index(fp, i), "%s", strings.TrimPrefix(trimRulesPrefix(err.Error()), "functions[0]: "))
					good = false
				}
			}
			ok = ok && good
			r.Functions = append(r.Functions, s)
		}
	}
	for _, tb := range []struct {
		key      string
		ranges   *modbus.TableRanges
		readOnly bool
	}{
		{"coils", &r.Coils, false},
		{"discrete-inputs", &r.DiscreteInputs, true},
		{"holding-registers", &r.HoldingRegisters, false},
		{"input-registers", &r.InputRegisters, true},
	} {
		v, has := f[tb.key]
		if !has {
			continue
		}
		tp := join(p, tb.key)
		tf := d.fields(v, tp, "read", "write")
		if tf == nil {
			ok = false
			continue
		}
		if rv, has := tf["read"]; has {
			rs, good := d.ranges(rv, join(tp, "read"))
			tb.ranges.Read, ok = rs, ok && good
		}
		if wv, has := tf["write"]; has {
			if tb.readOnly {
				d.nodeErrorf(wv, join(tp, "write"), "%s are read-only in Modbus; remove the write ranges", tb.key)
				ok = false
			} else {
				rs, good := d.ranges(wv, join(tp, "write"))
				tb.ranges.Write, ok = rs, ok && good
			}
		}
	}
	if v, has := f["limits"]; has && d.restricts(v, join(p, "limits"), "limits", "for no value limits") {
		lp := join(p, "limits")
		for i, it := range d.list(v, lp) {
			ip := index(lp, i)
			lf := d.fields(it, ip, "registers", "min", "max", "signed")
			d.require(it, ip, lf, "registers", "min", "max")
			if lf == nil || lf["registers"] == nil || lf["min"] == nil || lf["max"] == nil {
				ok = false
				continue
			}
			var l modbus.ValueLimit
			rg, good := d.modbusRange(lf["registers"], join(ip, "registers"))
			ok = ok && good
			l.Registers = rg
			if sv, has := lf["signed"]; has {
				l.Signed, good = d.boolean(sv, join(ip, "signed"))
				ok = ok && good
			}
			lo, hi := 0, 65535
			if l.Signed {
				lo, hi = -32768, 32767
			}
			var minGood, maxGood bool
			l.Min, minGood = d.integer(lf["min"], join(ip, "min"), lo, hi)
			l.Max, maxGood = d.integer(lf["max"], join(ip, "max"), lo, hi)
			ok = ok && minGood && maxGood
			if minGood && maxGood && l.Min > l.Max {
				d.nodeErrorf(lf["max"], join(ip, "max"), "max %d is less than min %d", l.Max, l.Min)
				ok = false
			}
			r.Limits = append(r.Limits, l)
		}
	}
	if ok {
		if err := r.Validate(); err != nil {
			d.nodeErrorf(n, p, "%s", trimRulesPrefix(err.Error()))
			ok = false
		}
	}
	return r, ok
}

// decodeModbusBlocks reads a grant's modbus: rules given as a list of
// per-unit blocks (a TCP-to-serial gateway's devices behind one
// address). Each block is read as decodeModbusRules reads the single
// mapping; a unit id in two blocks is reported at its second place,
// naming the first: which block judges a unit must not depend on order.
// Unit 0 (broadcast: every device behind the gateway) is in no block.
func decodeModbusBlocks(d *decoder, n *yaml.Node, p, grant string) ([]modbus.Rules, bool) {
	items := d.list(n, p)
	if len(items) == 0 {
		d.nodeErrorf(n, p, "empty list: give one block (units, functions, ranges) per device, or a single mapping for every unit")
		return nil, false
	}
	ok := true
	blocks := make([]modbus.Rules, len(items))
	first := map[int]string{} // unit id -> path of its first listing
	for i, it := range items {
		bp := index(p, i)
		r, good := decodeModbusRules(d, it, bp, grant)
		ok = ok && good
		if r == nil {
			continue
		}
		blocks[i] = *r
		up := join(bp, "units")
		for j, u := range r.Units {
			at := index(up, j)
			if d.failed[at] {
				continue
			}
			prev, seen := first[u]
			switch {
			case u == 0:
				d.errorf(d.lines[at], at, "%s; list the devices' own unit ids", modbus.BroadcastInBlock)
				ok = false
			case !seen:
				first[u] = at
			case !strings.HasPrefix(prev, up+"["):
				d.errorf(d.lines[at], at, "unit %d is also in %s (line %d); one block judges each unit, list it in only one", u, prev, d.lines[prev])
				ok = false
			}
		}
	}
	if ok {
		// CompileBlocks is the single definition of what is valid.
		if _, err := modbus.CompileBlocks(grant, blocks); err != nil {
			d.nodeErrorf(n, p, "%s", trimRulesPrefix(err.Error()))
			ok = false
		}
	}
	return blocks, ok
}

func (d *decoder) ranges(n *yaml.Node, path string) ([]modbus.Range, bool) {
	ok := true
	var out []modbus.Range
	items := d.list(n, path)
	for i, it := range items {
		r, good := d.modbusRange(it, index(path, i))
		ok = ok && good
		out = append(out, r)
	}
	return out, ok
}

// modbusRange reads "50-55", "52" or 52.
func (d *decoder) modbusRange(n *yaml.Node, path string) (modbus.Range, bool) {
	s, ok := d.scalar(n, path, `an address range like "50-55" or 52`, "!!str", "!!int")
	if !ok {
		return modbus.Range{}, false
	}
	r, err := modbus.ParseRange(s)
	if err != nil {
		d.nodeErrorf(n, path, "%v", err)
		return modbus.Range{}, false
	}
	return r, true
}

// trimRulesPrefix drops inspect/modbus's "modbus rules: " prefix: the
// field path already says where.
func trimRulesPrefix(s string) string {
	const prefix = "modbus rules: "
	if len(s) > len(prefix) && s[:len(prefix)] == prefix {
		return s[len(prefix):]
	}
	return s
}
