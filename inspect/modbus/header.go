package modbus

import "fmt"

// Frame size limits of Modbus/TCP (specification 4.1 and MBAP 3.1.3): the
// PDU is at most 253 bytes, the ADU at most 260 = 7 header bytes + 253.
// The MBAP length field counts the unit id and the PDU, so it lies in
// MinLength..MaxLength (unit id + function code at least, 1 + 253 at most).
const (
	HeaderLen = 7
	MaxPDU    = 253
	MaxADU    = HeaderLen + MaxPDU
	MinLength = 2
	MaxLength = 1 + MaxPDU
)

// Header is the MBAP header.
type Header struct {
	TransactionID uint16
	ProtocolID    uint16
	Length        uint16 // bytes that follow the length field: unit id + PDU
	Unit          uint8
}

// FrameLen returns the size of the whole ADU the header announces.
func (h Header) FrameLen() int { return HeaderLen - 1 + int(h.Length) }

func be16(b []byte) uint16 { return uint16(b[0])<<8 | uint16(b[1]) }

// ParseHeader decodes and validates the first 7 bytes of b.
func ParseHeader(b []byte) (Header, error) {
	if len(b) < HeaderLen {
		return Header{}, fmt.Errorf("%w: MBAP header: %d bytes, want %d", ErrMalformed, len(b), HeaderLen)
	}
	h := Header{TransactionID: be16(b), ProtocolID: be16(b[2:]), Length: be16(b[4:]), Unit: b[6]}
	if h.ProtocolID != 0 {
		return h, fmt.Errorf("%w: MBAP header: protocol id %d, want 0 (Modbus)", ErrMalformed, h.ProtocolID)
	}
	if h.Length > MaxLength {
		return h, fmt.Errorf("%w: MBAP header: length %d over %d (ADU limit %d bytes)", ErrOversized, h.Length, MaxLength, MaxADU)
	}
	if h.Length < MinLength {
		return h, fmt.Errorf("%w: MBAP header: length %d under %d (unit id and function code)", ErrMalformed, h.Length, MinLength)
	}
	return h, nil
}

// putHeader writes an MBAP header for a PDU of pduLen bytes into b[:7].
func putHeader(b []byte, tid uint16, unit uint8, pduLen int) {
	b[0], b[1] = byte(tid>>8), byte(tid)
	b[2], b[3] = 0, 0
	n := pduLen + 1
	b[4], b[5] = byte(n>>8), byte(n)
	b[6] = unit
}

// AppendException appends the exception response to req: same transaction
// id and unit, function | 0x80, code.
func AppendException(dst []byte, req *Request, code ExceptionCode) []byte {
	var b [HeaderLen + 2]byte
	putHeader(b[:], req.Header.TransactionID, req.Header.Unit, 2)
	b[7] = byte(req.Function) | exceptionBit
	b[8] = byte(code)
	return append(dst, b[:]...)
}
