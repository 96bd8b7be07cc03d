package modbus

import "fmt"

// Request is a decoded Modbus/TCP request. Its slices alias the frame given
// to Parse; copy what must outlive that buffer.
type Request struct {
	Header   Header
	Function Function
	// SubFunction: the diagnostics sub-function (8) or the MEI type (43).
	SubFunction uint16
	// KnownSubFunction is false for a diagnostics sub-function or MEI type
	// the specification does not define.
	KnownSubFunction bool
	Table            Table
	// Address and Count: the span read or written. For function 23 the
	// read span; for 20/21 Count is the number of sub-requests; for 24
	// Address is the FIFO pointer and Count 0 (the device decides).
	Address, Count uint16
	// WriteAddress and WriteCount: the write span of function 23.
	WriteAddress, WriteCount uint16
	// Data: the values written (big-endian registers or packed coils; the
	// 0xFF00/0x0000 value of function 5; the and/or masks of 22), the
	// sub-function data of 8 and 43, or the raw data of other functions.
	Data []byte
	ADU  []byte
}

// PDU returns function code and data.
func (r *Request) PDU() []byte { return r.ADU[HeaderLen:] }

// Register returns the i-th written register value.
func (r *Request) Register(i int) uint16 { return be16(r.Data[2*i:]) }

// Parse decodes and validates one complete ADU (MBAP header and PDU).
// It does not allocate unless it returns an error.
func (r *Request) Parse(adu []byte) error {
	h, err := ParseHeader(adu)
	if err != nil {
		return err
	}
	if len(adu) != h.FrameLen() {
		return fmt.Errorf("%w: MBAP length %d announces a %d-byte frame, got %d bytes", ErrMalformed, h.Length, h.FrameLen(), len(adu))
	}
	f := Function(adu[HeaderLen])
	d := adu[HeaderLen+1:]
	*r = Request{Header: h, Function: f, ADU: adu, Data: d, KnownSubFunction: true}
	switch f {
	case FuncReadCoils, FuncReadDiscreteInputs:
		r.Table = TableCoils
		if f == FuncReadDiscreteInputs {
			r.Table = TableDiscreteInputs
		}
		return r.span(d, 2000)
	case FuncReadHoldingRegisters, FuncReadInputRegisters:
		r.Table = TableHoldingRegisters
		if f == FuncReadInputRegisters {
			r.Table = TableInputRegisters
		}
		return r.span(d, 125)
	case FuncWriteSingleCoil:
		r.Table = TableCoils
		if err := r.single(d); err != nil {
			return err
		}
		if v := be16(d[2:]); v != 0x0000 && v != 0xFF00 {
			return illegalValue(f, "coil value 0x%04x, want 0x0000 (off) or 0xff00 (on)", v)
		}
	case FuncWriteSingleRegister:
		r.Table = TableHoldingRegisters
		return r.single(d)
	case FuncReadExceptionStatus, FuncGetCommEventCounter, FuncGetCommEventLog, FuncReportServerID:
		r.Data = nil
		if len(d) != 0 {
			return reqErr(f, "request has %d data bytes, want none", len(d))
		}
	case FuncDiagnostics:
		if len(d) < 2 {
			return reqErr(f, "request is %d data bytes, want a 2-byte sub-function", len(d))
		}
		r.SubFunction = be16(d)
		r.Data = d[2:]
		_, r.KnownSubFunction = diagSubs[r.SubFunction]
		return parseDiagRequest(r.SubFunction, r.Data)
	case FuncWriteMultipleCoils:
		r.Table = TableCoils
		return r.multiple(d, 1968, (int(r.countOf(d))+7)/8)
	case FuncWriteMultipleRegisters:
		r.Table = TableHoldingRegisters
		return r.multiple(d, 123, 2*int(r.countOf(d)))
	case FuncReadFileRecord:
		r.Table = TableFileRecords
		return r.readFileRecord(d)
	case FuncWriteFileRecord:
		r.Table = TableFileRecords
		return r.writeFileRecord(d)
	case FuncMaskWriteRegister:
		r.Table = TableHoldingRegisters
		if len(d) != 6 {
			return reqErr(f, "request is %d data bytes, want 6 (address, and mask, or mask)", len(d))
		}
		r.Address, r.Count, r.Data = be16(d), 1, d[2:]
	case FuncReadWriteMultipleRegisters:
		return r.readWriteMultiple(d)
	case FuncReadFIFOQueue:
		r.Table = TableHoldingRegisters
		if len(d) != 2 {
			return reqErr(f, "request is %d data bytes, want 2 (FIFO pointer address)", len(d))
		}
		r.Address, r.Data = be16(d), nil
	case FuncEncapsulatedInterface:
		return r.encapsulated(d)
	default:
		if f.Class() == ClassInvalid {
			return reqErr(f, "function code %d is not a request function (0 and 128-255 are invalid)", f)
		}
		// user-defined or reserved: well-formed as far as Modbus/TCP knows.
	}
	return nil
}

func (r *Request) countOf(d []byte) uint16 {
	if len(d) < 4 {
		return 0
	}
	return be16(d[2:])
}

// span parses start address + quantity of a read.
func (r *Request) span(d []byte, max uint16) error {
	if len(d) != 4 {
		return reqErr(r.Function, "request is %d data bytes, want 4 (address, quantity)", len(d))
	}
	r.Address, r.Count, r.Data = be16(d), be16(d[2:]), nil
	return checkSpan(r.Function, "", r.Address, r.Count, max)
}

func checkSpan(f Function, what string, addr, count, max uint16) error {
	if count < 1 || count > max {
		return illegalValue(f, "%squantity %d out of range 1..%d", what, count, max)
	}
	if int(addr)+int(count) > 65536 {
		return illegalAddress(f, "%saddress %d + quantity %d passes the end of the address space (65536)", what, addr, count)
	}
	return nil
}

func (r *Request) single(d []byte) error {
	if len(d) != 4 {
		return reqErr(r.Function, "request is %d data bytes, want 4 (address, value)", len(d))
	}
	r.Address, r.Count, r.Data = be16(d), 1, d[2:4]
	return nil
}

func (r *Request) multiple(d []byte, max uint16, wantBytes int) error {
	if len(d) < 5 {
		return reqErr(r.Function, "request is %d data bytes, want at least 5 (address, quantity, byte count)", len(d))
	}
	r.Address, r.Count = be16(d), be16(d[2:])
	// The frame's layout first (a byte count the bytes do not follow
	// leaves nothing to answer), then its values.
	bc := int(d[4])
	if len(d)-5 != bc {
		return reqErr(r.Function, "byte count %d but %d value bytes follow", bc, len(d)-5)
	}
	r.Data = d[5:]
	if err := checkSpan(r.Function, "", r.Address, r.Count, max); err != nil {
		return err
	}
	if bc != wantBytes {
		return illegalValue(r.Function, "byte count %d does not match quantity %d (want %d)", bc, r.Count, wantBytes)
	}
	return nil
}

func (r *Request) readWriteMultiple(d []byte) error {
	f := r.Function
	r.Table = TableHoldingRegisters
	if len(d) < 9 {
		return reqErr(f, "request is %d data bytes, want at least 9 (read address, read quantity, write address, write quantity, byte count)", len(d))
	}
	r.Address, r.Count = be16(d), be16(d[2:])
	r.WriteAddress, r.WriteCount = be16(d[4:]), be16(d[6:])
	bc := int(d[8])
	if len(d)-9 != bc {
		return reqErr(f, "byte count %d but %d value bytes follow", bc, len(d)-9)
	}
	r.Data = d[9:]
	if err := checkSpan(f, "read ", r.Address, r.Count, 125); err != nil {
		return err
	}
	if err := checkSpan(f, "write ", r.WriteAddress, r.WriteCount, 121); err != nil {
		return err
	}
	if want := 2 * int(r.WriteCount); bc != want {
		return illegalValue(f, "byte count %d does not match write quantity %d (want %d)", bc, r.WriteCount, want)
	}
	return nil
}

// file record sub-request header: reference type 6, file, record, length.
const fileRefType = 6

func checkFileRef(f Function, i int, sub []byte) (length int, err error) {
	if sub[0] != fileRefType {
		return 0, illegalAddress(f, "sub-request %d: reference type %d, want 6", i, sub[0])
	}
	file, rec, n := be16(sub[1:]), be16(sub[3:]), be16(sub[5:])
	if file == 0 {
		return 0, illegalAddress(f, "sub-request %d: file number 0, want 1..65535", i)
	}
	if rec > 9999 {
		return 0, illegalAddress(f, "sub-request %d: record number %d out of range 0..9999", i, rec)
	}
	if n == 0 || int(rec)+int(n) > 10000 {
		return 0, illegalAddress(f, "sub-request %d: record length %d from record %d, want 1..%d", i, n, rec, 10000-int(rec))
	}
	return int(n), nil
}

func (r *Request) readFileRecord(d []byte) error {
	f := r.Function
	if len(d) < 1 {
		return reqErr(f, "request has no byte count")
	}
	bc := int(d[0])
	if len(d)-1 != bc {
		return reqErr(f, "byte count %d but %d bytes follow", bc, len(d)-1)
	}
	if bc < 7 || bc > 0xF5 || bc%7 != 0 {
		return illegalValue(f, "byte count %d, want a multiple of 7 in 7..245", bc)
	}
	respLen := 2 // function code + response data length
	for i := 0; i*7 < bc; i++ {
		n, err := checkFileRef(f, i, d[1+i*7:])
		if err != nil {
			return err
		}
		respLen += 2 + 2*n
	}
	if respLen > MaxPDU {
		return illegalValue(f, "records asked for need a %d-byte response, over the PDU limit %d", respLen, MaxPDU)
	}
	r.Count = uint16(bc / 7)
	r.Data = d[1:]
	return nil
}

func (r *Request) writeFileRecord(d []byte) error {
	f := r.Function
	if len(d) < 1 {
		return reqErr(f, "request has no byte count")
	}
	bc := int(d[0])
	if len(d)-1 != bc {
		return reqErr(f, "byte count %d but %d bytes follow", bc, len(d)-1)
	}
	if bc < 9 || bc > 0xFB {
		return illegalValue(f, "byte count %d out of range 9..251", bc)
	}
	rest := d[1:]
	i := 0
	for ; len(rest) > 0; i++ {
		if len(rest) < 7 {
			return reqErr(f, "sub-request %d: %d bytes left, want a 7-byte header", i, len(rest))
		}
		n, err := checkFileRef(f, i, rest)
		if err != nil {
			return err
		}
		if len(rest)-7 < 2*n {
			return reqErr(f, "sub-request %d: record length %d needs %d data bytes, %d left", i, n, 2*n, len(rest)-7)
		}
		rest = rest[7+2*n:]
	}
	r.Count = uint16(i)
	r.Data = d[1:]
	return nil
}

func (r *Request) encapsulated(d []byte) error {
	f := r.Function
	if len(d) < 1 {
		return reqErr(f, "request has no MEI type")
	}
	r.SubFunction = uint16(d[0])
	r.Data = d[1:]
	switch d[0] {
	case MEIReadDeviceIdentification:
		if len(d) != 3 {
			return reqErr(f, "MEI 14: request is %d data bytes, want 3 (MEI type, read device id code, object id)", len(d))
		}
		if c := d[1]; c < 1 || c > 4 {
			return illegalValue(f, "MEI 14: read device id code %d out of range 1..4", c)
		}
	case MEICANopen:
		// CANopen general reference: content defined by CiA DS-309.
	default:
		r.KnownSubFunction = false
	}
	return nil
}
