package modbus

import (
	"bytes"
	"fmt"
)

// Response is a decoded Modbus/TCP response. Its slices alias the frame
// given to Parse.
type Response struct {
	Header   Header
	Function Function // without the exception bit
	// Exception is non-zero for an exception response.
	Exception ExceptionCode
	// SubFunction: diagnostics sub-function (8) or MEI type (43).
	SubFunction uint16
	// Address and Count: echoed by writes (5, 6, 15, 16, 22); Count is the
	// FIFO count for 24.
	Address, Count uint16
	// Data: values read (big-endian registers, packed bits), the value
	// echoed by 5/6, the masks of 22, or the raw data of other functions.
	Data []byte
	ADU  []byte
}

// Register returns the i-th register value of Data.
func (r *Response) Register(i int) uint16 { return be16(r.Data[2*i:]) }

// Parse decodes and validates one complete response ADU on its own; Match
// then checks it against the request it answers.
func (r *Response) Parse(adu []byte) error {
	h, err := ParseHeader(adu)
	if err != nil {
		return err
	}
	if len(adu) != h.FrameLen() {
		return fmt.Errorf("%w: MBAP length %d announces a %d-byte frame, got %d bytes", ErrMalformed, h.Length, h.FrameLen(), len(adu))
	}
	fc := adu[HeaderLen]
	d := adu[HeaderLen+1:]
	*r = Response{Header: h, Function: Function(fc &^ exceptionBit), ADU: adu, Data: d}
	f := r.Function
	if fc&exceptionBit != 0 {
		if f == 0 {
			return respErr(f, "exception response to function 0")
		}
		if len(d) != 1 {
			return respErr(f, "exception response has %d data bytes, want 1 (exception code)", len(d))
		}
		if d[0] == 0 {
			return respErr(f, "exception code 0")
		}
		r.Exception, r.Data = ExceptionCode(d[0]), nil
		return nil
	}
	switch f {
	case 0:
		return respErr(f, "function code 0 is invalid")
	case FuncReadCoils, FuncReadDiscreteInputs:
		return r.byteCounted(d, 1, 250, false)
	case FuncReadHoldingRegisters, FuncReadInputRegisters, FuncReadWriteMultipleRegisters:
		return r.byteCounted(d, 2, 250, true)
	case FuncWriteSingleCoil, FuncWriteSingleRegister, FuncWriteMultipleCoils, FuncWriteMultipleRegisters:
		if len(d) != 4 {
			return respErr(f, "response is %d data bytes, want 4 (address, value or quantity)", len(d))
		}
		r.Address = be16(d)
		if f <= FuncWriteSingleRegister {
			r.Count, r.Data = 1, d[2:]
		} else {
			r.Count, r.Data = be16(d[2:]), nil
		}
		if f == FuncWriteSingleCoil {
			if v := be16(d[2:]); v != 0 && v != 0xFF00 {
				return respErr(f, "coil value 0x%04x, want 0x0000 or 0xff00", v)
			}
		}
	case FuncReadExceptionStatus:
		if len(d) != 1 {
			return respErr(f, "response is %d data bytes, want 1 (output data)", len(d))
		}
	case FuncDiagnostics:
		if len(d) < 2 {
			return respErr(f, "response is %d data bytes, want a 2-byte sub-function", len(d))
		}
		r.SubFunction, r.Data = be16(d), d[2:]
		if r.SubFunction != DiagReturnQueryData && len(r.Data) != 2 {
			return respErr(f, "sub-function 0x%02x: data is %d bytes, want 2", r.SubFunction, len(r.Data))
		}
	case FuncGetCommEventCounter:
		if len(d) != 4 {
			return respErr(f, "response is %d data bytes, want 4 (status, event count)", len(d))
		}
	case FuncGetCommEventLog:
		if len(d) < 1 {
			return respErr(f, "response has no byte count")
		}
		if bc := int(d[0]); bc < 6 || bc > 6+64 || len(d)-1 != bc {
			return respErr(f, "byte count %d with %d bytes following, want 6..70 and equal", bc, len(d)-1)
		}
	case FuncReportServerID:
		if len(d) < 1 {
			return respErr(f, "response has no byte count")
		}
		if bc := int(d[0]); bc < 1 || len(d)-1 != bc {
			return respErr(f, "byte count %d with %d bytes following, want at least 1 and equal", bc, len(d)-1)
		}
		r.Data = d[1:]
	case FuncReadFileRecord:
		return r.readFileRecord(d)
	case FuncWriteFileRecord:
		// echo of the request, checked by Match.
	case FuncMaskWriteRegister:
		if len(d) != 6 {
			return respErr(f, "response is %d data bytes, want 6 (address, and mask, or mask)", len(d))
		}
		r.Address, r.Count, r.Data = be16(d), 1, d[2:]
	case FuncReadFIFOQueue:
		if len(d) < 4 {
			return respErr(f, "response is %d data bytes, want at least 4 (byte count, FIFO count)", len(d))
		}
		bc, n := int(be16(d)), int(be16(d[2:]))
		if n > 31 {
			return respErr(f, "FIFO count %d over 31", n)
		}
		if bc != 2+2*n || len(d)-2 != bc {
			return respErr(f, "byte count %d, FIFO count %d, %d bytes following: want byte count %d and equal", bc, n, len(d)-2, 2+2*n)
		}
		r.Count, r.Data = uint16(n), d[4:]
	case FuncEncapsulatedInterface:
		return r.encapsulated(d)
	}
	return nil
}

func (r *Response) byteCounted(d []byte, unit, max int, words bool) error {
	f := r.Function
	if len(d) < 1 {
		return respErr(f, "response has no byte count")
	}
	bc := int(d[0])
	if bc < unit || bc > max || (words && bc%2 != 0) {
		kind := "a number"
		if words {
			kind = "an even number"
		}
		return respErr(f, "byte count %d, want %s in %d..%d", bc, kind, unit, max)
	}
	if len(d)-1 != bc {
		return respErr(f, "byte count %d but %d value bytes follow", bc, len(d)-1)
	}
	r.Data = d[1:]
	return nil
}

func (r *Response) readFileRecord(d []byte) error {
	f := r.Function
	if len(d) < 1 {
		return respErr(f, "response has no data length")
	}
	bc := int(d[0])
	if len(d)-1 != bc || bc < 4 || bc > 0xF5 {
		return respErr(f, "data length %d with %d bytes following, want 4..245 and equal", bc, len(d)-1)
	}
	rest := d[1:]
	i := 0
	for ; len(rest) > 0; i++ {
		n := int(rest[0])
		if n < 3 || n%2 == 0 || n > len(rest)-1 {
			return respErr(f, "sub-response %d: length %d, want odd, at least 3, within the %d bytes left", i, n, len(rest)-1)
		}
		if rest[1] != fileRefType {
			return respErr(f, "sub-response %d: reference type %d, want 6", i, rest[1])
		}
		rest = rest[1+n:]
	}
	r.Count = uint16(i)
	r.Data = d[1:]
	return nil
}

func (r *Response) encapsulated(d []byte) error {
	f := r.Function
	if len(d) < 1 {
		return respErr(f, "response has no MEI type")
	}
	r.SubFunction = uint16(d[0])
	r.Data = d[1:]
	if d[0] != MEIReadDeviceIdentification {
		return nil
	}
	if len(d) < 6 {
		return respErr(f, "MEI 14: response is %d data bytes, want at least 6", len(d))
	}
	if c := d[1]; c < 1 || c > 4 {
		return respErr(f, "MEI 14: read device id code %d out of range 1..4", c)
	}
	switch d[2] {
	case 0x01, 0x02, 0x03, 0x81, 0x82, 0x83:
	default:
		return respErr(f, "MEI 14: conformity level 0x%02x, want 0x01-0x03 or 0x81-0x83", d[2])
	}
	if d[3] != 0x00 && d[3] != 0xFF {
		return respErr(f, "MEI 14: more follows 0x%02x, want 0x00 or 0xff", d[3])
	}
	n := int(d[5])
	rest := d[6:]
	for i := 0; i < n; i++ {
		if len(rest) < 2 || int(rest[1]) > len(rest)-2 {
			return respErr(f, "MEI 14: object %d of %d truncated", i, n)
		}
		rest = rest[2+int(rest[1]):]
	}
	if len(rest) != 0 {
		return respErr(f, "MEI 14: %d bytes after %d objects", len(rest), n)
	}
	return nil
}

// Match checks that r, already parsed, answers req: same unit and
// function, and sizes and echoes consistent with the request.
func (r *Response) Match(req *Request) error {
	f := req.Function
	if r.Header.Unit != req.Header.Unit {
		return matchErr(f, "unit %d answers a request to unit %d", r.Header.Unit, req.Header.Unit)
	}
	if r.Function != f {
		return matchErr(f, "function %d answers function %d", r.Function, f)
	}
	if r.Exception != 0 {
		return nil
	}
	switch f {
	case FuncReadCoils, FuncReadDiscreteInputs:
		if want := (int(req.Count) + 7) / 8; len(r.Data) != want {
			return matchErr(f, "byte count %d for quantity %d (want %d)", len(r.Data), req.Count, want)
		}
	case FuncReadHoldingRegisters, FuncReadInputRegisters, FuncReadWriteMultipleRegisters:
		if want := 2 * int(req.Count); len(r.Data) != want {
			return matchErr(f, "byte count %d for quantity %d (want %d)", len(r.Data), req.Count, want)
		}
	case FuncWriteSingleCoil, FuncWriteSingleRegister, FuncMaskWriteRegister:
		if r.Address != req.Address || !bytes.Equal(r.Data, req.Data) {
			return matchErr(f, "echo of address %d value % x differs from request address %d value % x", r.Address, r.Data, req.Address, req.Data)
		}
	case FuncWriteMultipleCoils, FuncWriteMultipleRegisters:
		if r.Address != req.Address || r.Count != req.Count {
			return matchErr(f, "echo of address %d quantity %d differs from request address %d quantity %d", r.Address, r.Count, req.Address, req.Count)
		}
	case FuncDiagnostics:
		if r.SubFunction != req.SubFunction {
			return matchErr(f, "sub-function 0x%02x answers sub-function 0x%02x", r.SubFunction, req.SubFunction)
		}
		if diagEchoes(req.SubFunction) && !bytes.Equal(r.Data, req.Data) {
			return matchErr(f, "sub-function 0x%02x: data % x does not echo request data % x", req.SubFunction, r.Data, req.Data)
		}
	case FuncWriteFileRecord:
		if !bytes.Equal(r.ADU[HeaderLen+1:], req.ADU[HeaderLen+1:]) {
			return matchErr(f, "response does not echo the request")
		}
	case FuncReadFileRecord:
		if r.Count != req.Count {
			return matchErr(f, "%d sub-responses for %d sub-requests", r.Count, req.Count)
		}
		rest := r.Data
		for i := 0; i < int(req.Count); i++ {
			want := int(be16(req.Data[i*7+5:]))
			if got := (int(rest[0]) - 1) / 2; got != want {
				return matchErr(f, "sub-response %d has %d registers, request asked %d", i, got, want)
			}
			rest = rest[1+int(rest[0]):]
		}
	case FuncEncapsulatedInterface:
		if r.SubFunction != req.SubFunction {
			return matchErr(f, "MEI type %d answers MEI type %d", r.SubFunction, req.SubFunction)
		}
		if req.SubFunction == MEIReadDeviceIdentification && r.Data[0] != req.Data[0] {
			return matchErr(f, "MEI 14: read device id code %d answers code %d", r.Data[0], req.Data[0])
		}
	}
	return nil
}
