package plant

import "github.com/otgate/otgate/inspect/modbus"

// Device identification objects (function 43/14, basic category).
var deviceID = [][]byte{[]byte("otgate"), []byte("demo-plant-tank"), []byte("1.0")}

// serve executes req against the tank and appends the response PDU to b,
// or returns the exception code.
func (t *Tank) serve(b []byte, req *modbus.Request) ([]byte, modbus.ExceptionCode) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.advance()
	f := req.Function
	addr, count := int(req.Address), int(req.Count)
	b = append(b, byte(f))
	switch f {
	case modbus.FuncReadCoils, modbus.FuncReadDiscreteInputs:
		size := NumCoils
		if f == modbus.FuncReadDiscreteInputs {
			size = NumDiscreteInputs
		}
		if addr+count > size {
			return nil, modbus.ExIllegalDataAddress
		}
		nb := (count + 7) / 8
		b = append(b, byte(nb))
		for i := 0; i < nb; i++ {
			var v byte
			for j := 0; j < 8 && 8*i+j < count; j++ {
				if t.bit(f == modbus.FuncReadCoils, addr+8*i+j) {
					v |= 1 << j
				}
			}
			b = append(b, v)
		}
	case modbus.FuncReadHoldingRegisters, modbus.FuncReadInputRegisters:
		size := NumHolding
		if f == modbus.FuncReadInputRegisters {
			size = NumInputRegisters
		}
		if addr+count > size {
			return nil, modbus.ExIllegalDataAddress
		}
		b = append(b, byte(2*count))
		for i := 0; i < count; i++ {
			v := t.inputRegister(addr + i)
			if f == modbus.FuncReadHoldingRegisters {
				v = t.hold[addr+i]
			}
			b = append(b, byte(v>>8), byte(v))
		}
	case modbus.FuncWriteSingleCoil, modbus.FuncWriteMultipleCoils:
		if addr+count > NumCoils {
			return nil, modbus.ExIllegalDataAddress
		}
		for i := 0; i < count; i++ {
			if f == modbus.FuncWriteSingleCoil {
				t.coils[addr] = req.Data[0] == 0xFF
			} else {
				t.coils[addr+i] = req.Data[i/8]>>(i%8)&1 == 1
			}
		}
		b = append(b, req.ADU[modbus.HeaderLen+1:modbus.HeaderLen+5]...)
	case modbus.FuncWriteSingleRegister, modbus.FuncWriteMultipleRegisters:
		if addr+count > NumHolding {
			return nil, modbus.ExIllegalDataAddress
		}
		for i := 0; i < count; i++ {
			if !checkHolding(addr+i, req.Register(i)) {
				return nil, modbus.ExIllegalDataValue
			}
		}
		for i := 0; i < count; i++ {
			t.hold[addr+i] = req.Register(i)
		}
		b = append(b, req.ADU[modbus.HeaderLen+1:modbus.HeaderLen+5]...)
	case modbus.FuncMaskWriteRegister:
		if addr >= NumHolding {
			return nil, modbus.ExIllegalDataAddress
		}
		and, or := req.Register(0), req.Register(1)
		v := (t.hold[addr] & and) | (or &^ and)
		if !checkHolding(addr, v) {
			return nil, modbus.ExIllegalDataValue
		}
		t.hold[addr] = v
		b = append(b, req.PDU()[1:]...)
	case modbus.FuncReadWriteMultipleRegisters:
		waddr, wcount := int(req.WriteAddress), int(req.WriteCount)
		if addr+count > NumHolding || waddr+wcount > NumHolding {
			return nil, modbus.ExIllegalDataAddress
		}
		for i := 0; i < wcount; i++ {
			if !checkHolding(waddr+i, req.Register(i)) {
				return nil, modbus.ExIllegalDataValue
			}
		}
		for i := 0; i < wcount; i++ {
			t.hold[waddr+i] = req.Register(i)
		}
		b = append(b, byte(2*count))
		for i := 0; i < count; i++ {
			v := t.hold[addr+i]
			b = append(b, byte(v>>8), byte(v))
		}
	case modbus.FuncDiagnostics:
		if req.SubFunction != modbus.DiagReturnQueryData {
			return nil, modbus.ExIllegalFunction
		}
		b = append(b, req.PDU()[1:]...)
	case modbus.FuncReportServerID:
		id := []byte("otgate-plant")
		b = append(b, byte(len(id)+1))
		b = append(b, id...)
		b = append(b, 0xFF) // run indicator: on
	case modbus.FuncEncapsulatedInterface:
		if req.SubFunction != modbus.MEIReadDeviceIdentification {
			return nil, modbus.ExIllegalFunction
		}
		code, obj := req.Data[0], int(req.Data[1])
		if code == 4 && obj >= len(deviceID) || code != 1 && code != 4 {
			return nil, modbus.ExIllegalDataAddress
		}
		first, last := 0, len(deviceID)-1
		if code == 4 {
			first, last = obj, obj
		} else if obj <= last {
			first = obj
		}
		b = append(b, modbus.MEIReadDeviceIdentification, code, 0x81, 0x00, 0x00, byte(last-first+1))
		for i := first; i <= last; i++ {
			b = append(b, byte(i), byte(len(deviceID[i])))
			b = append(b, deviceID[i]...)
		}
	default:
		return nil, modbus.ExIllegalFunction
	}
	return b, 0
}
