package modbus

import (
	"fmt"
	"strconv"
)

// Decision is the verdict of a Policy on one request.
type Decision struct {
	Allow bool
	// Exception is what a denied request is answered with: 01 illegal
	// function (function, sub-function or MEI type not allowed), 02 illegal
	// data address (span outside the ranges), 03 illegal data value
	// (value outside a limit), 0A gateway path unavailable (unit id not
	// allowed: the gate is the gateway and offers no path to that unit).
	Exception ExceptionCode
	// Rule names the rules that decided; Reason says why a request is
	// denied ("" when allowed).
	Rule   string
	Reason string
}

// Name returns the rule name given in Rules.Name (CompileBlocks: its
// name).
func (p *Policy) Name() string { return p.name }

// Judge decides on one parsed request, by the block that lists its unit
// id. It does not allocate when it allows.
func (p *Policy) Judge(req *Request) Decision {
	b := p.byUnit[req.Header.Unit]
	if b == nil {
		return deny(p.name, ExGatewayPathUnavailable, "unit %d not in allowed units %s", req.Header.Unit, p.unitList)
	}
	return b.judge(req)
}

// judge decides on a request to one of p's units.
func (p *block) judge(req *Request) Decision {
	f := req.Function
	if !p.funcs[f] {
		allowed := false
		switch f {
		case FuncDiagnostics:
			allowed = p.diagSubs[req.SubFunction]
		case FuncEncapsulatedInterface:
			allowed = req.SubFunction < 256 && p.meiTypes[req.SubFunction]
		}
		if !allowed {
			return p.deny(ExIllegalFunction, "%s not in allowed functions %s", opName(req), p.funcList)
		}
	}
	switch f {
	case FuncReadCoils, FuncReadDiscreteInputs, FuncReadHoldingRegisters, FuncReadInputRegisters:
		return p.span(req, false, req.Address, req.Count)
	case FuncReadFIFOQueue:
		return p.span(req, false, req.Address, fifoSpan(req.Address))
	case FuncWriteSingleCoil, FuncWriteMultipleCoils:
		return p.span(req, true, req.Address, req.Count)
	case FuncWriteSingleRegister, FuncWriteMultipleRegisters, FuncMaskWriteRegister:
		if d := p.span(req, true, req.Address, req.Count); !d.Allow {
			return d
		}
		return p.values(req, req.Address)
	case FuncReadWriteMultipleRegisters:
		if d := p.span(req, false, req.Address, req.Count); !d.Allow {
			return d
		}
		if d := p.span(req, true, req.WriteAddress, req.WriteCount); !d.Allow {
			return d
		}
		return p.values(req, req.WriteAddress)
	}
	return Decision{Allow: true, Rule: p.name}
}

// maxFIFO is the most registers a read FIFO queue response returns: the
// count register and up to 31 queued data registers (specification 6.18).
const maxFIFO = 32

// fifoSpan is the span a read FIFO queue request at pointer is judged
// on: the specification leaves where the queue lies to the device, and
// devices keep it in the holding registers from the pointer on (count,
// then data), so the whole queue must be readable, not only the pointer.
// Cut at the end of the address space.
func fifoSpan(pointer uint16) uint16 {
	return uint16(min(maxFIFO, 65536-int(pointer)))
}

func (p *block) deny(code ExceptionCode, format string, args ...any) Decision {
	return deny(p.name, code, format, args...)
}

func deny(rule string, code ExceptionCode, format string, args ...any) Decision {
	prefix := "modbus rules"
	if rule != "" {
		prefix += " " + strconv.Quote(rule)
	}
	return Decision{Exception: code, Rule: rule, Reason: prefix + ": " + fmt.Sprintf(format, args...)}
}

func (p *block) span(req *Request, write bool, addr, count uint16) Decision {
	set, kind := p.read[req.Table], "read"
	if write {
		set, kind = p.write[req.Table], "write"
	}
	if set.covers(addr, count) {
		return Decision{Allow: true, Rule: p.name}
	}
	return p.deny(ExIllegalDataAddress, "%s %s %s outside %s ranges %s", kind, req.Table, spanText(addr, count), kind, set)
}

func spanText(addr, count uint16) string {
	if count <= 1 {
		return strconv.Itoa(int(addr))
	}
	return strconv.Itoa(int(addr)) + ".." + strconv.Itoa(int(addr)+int(count)-1)
}

// values checks written holding register values against the limits.
func (p *block) values(req *Request, first uint16) Decision {
	if !p.hasLimits {
		return Decision{Allow: true, Rule: p.name}
	}
	if req.Function == FuncMaskWriteRegister {
		// The result depends on the register's current value, which the
		// gate does not know: fail closed on limited registers.
		for _, l := range p.limits {
			if first >= l.Registers.First && first <= l.Registers.Last {
				return p.deny(ExIllegalDataValue, "mask write to holding %d, which has a value limit %d..%d, cannot be checked", first, l.Min, l.Max)
			}
		}
		return Decision{Allow: true, Rule: p.name}
	}
	n := len(req.Data) / 2
	for i := 0; i < n; i++ {
		addr := int(first) + i
		raw := req.Register(i)
		for _, l := range p.limits {
			if addr < int(l.Registers.First) || addr > int(l.Registers.Last) {
				continue
			}
			v := int(raw)
			if l.Signed {
				v = int(int16(raw))
			}
			if v < l.Min || v > l.Max {
				return p.deny(ExIllegalDataValue, "write holding %d = %d outside limit %d..%d", addr, v, l.Min, l.Max)
			}
		}
	}
	return Decision{Allow: true, Rule: p.name}
}

// opName names the operation of req, with the sub-function for 8 and 43.
func opName(req *Request) string {
	switch req.Function {
	case FuncDiagnostics:
		if n := DiagSubFunctionName(req.SubFunction); n != "" {
			return fmt.Sprintf("function 8 (diagnostics %s)", n)
		}
		return fmt.Sprintf("function 8 (diagnostics sub-function 0x%02x)", req.SubFunction)
	case FuncEncapsulatedInterface:
		return fmt.Sprintf("function 43 (MEI type %d)", req.SubFunction)
	}
	return fmt.Sprintf("function %d (%s)", uint8(req.Function), req.Function)
}
