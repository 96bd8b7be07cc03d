package audit

import "encoding/binary"

// The append path encodes every payload record (one per Modbus
// transaction) and every record envelope. The functions here write the
// same deterministic CBOR as encMode (map keys are the small integers of
// the struct tags, so core deterministic order is numeric order; omitempty
// fields are left out when zero or empty) without reflection. They decline
// (ok false) the shapes they do not cover, which then go through encMode:
// a Decoded with Detail (a map), nil Prev or Body in an envelope.
// TestFastEncodingMatchesLibrary holds them to encMode byte for byte.

// CBOR major types.
const (
	cborUint   = 0 << 5
	cborNegInt = 1 << 5
	cborBytes  = 2 << 5
	cborText   = 3 << 5
	cborArray  = 4 << 5
	cborMap    = 5 << 5
	// cborTrue is the simple value true (major type 7, value 21).
	cborTrue = 0xf5
)

// appendHead appends the shortest head of major type major with argument n.
func appendHead(b []byte, major byte, n uint64) []byte {
	switch {
	case n < 24:
		return append(b, major|byte(n))
	case n <= 0xFF:
		return append(b, major|24, byte(n))
	case n <= 0xFFFF:
		return binary.BigEndian.AppendUint16(append(b, major|25), uint16(n))
	case n <= 0xFFFFFFFF:
		return binary.BigEndian.AppendUint32(append(b, major|26), uint32(n))
	}
	return binary.BigEndian.AppendUint64(append(b, major|27), n)
}

func appendInt(b []byte, v int64) []byte {
	if v >= 0 {
		return appendHead(b, cborUint, uint64(v))
	}
	return appendHead(b, cborNegInt, uint64(-1-v))
}

func appendText(b []byte, s string) []byte {
	return append(appendHead(b, cborText, uint64(len(s))), s...)
}

func appendByteString(b []byte, s []byte) []byte {
	return append(appendHead(b, cborBytes, uint64(len(s))), s...)
}

// appendRecordCBOR appends the encoding of rec.
func appendRecordCBOR(b []byte, rec *Record) ([]byte, bool) {
	if rec.Prev == nil || rec.Body == nil {
		return b, false // encMode writes nil byte slices as null
	}
	fields := uint64(5)
	if rec.Dev {
		fields = 6
	}
	b = appendHead(b, cborMap, fields)
	b = appendHead(appendHead(b, cborUint, 1), cborUint, rec.Seq)
	b = appendInt(appendHead(b, cborUint, 2), int64(rec.Time))
	b = appendByteString(appendHead(b, cborUint, 3), rec.Prev)
	b = appendHead(appendHead(b, cborUint, 4), cborUint, uint64(rec.Kind))
	b = appendByteString(appendHead(b, cborUint, 5), rec.Body)
	if rec.Dev {
		b = append(appendHead(b, cborUint, 6), cborTrue)
	}
	return b, true
}

// fieldWriter appends the fields of a struct encoded as a CBOR map with
// fewer than 24 fields (so the map head is one byte, patched at the end)
// and small integer keys given in increasing order.
type fieldWriter struct {
	b    []byte
	head int    // index of the map head
	n    uint64 // fields written
}

func beginMap(b []byte) fieldWriter {
	return fieldWriter{b: append(b, cborMap), head: len(b)}
}

func (f *fieldWriter) key(k uint64) {
	f.b = appendHead(f.b, cborUint, k)
	f.n++
}

func (f *fieldWriter) uint(k, v uint64, omitEmpty bool) {
	if v != 0 || !omitEmpty {
		f.key(k)
		f.b = appendHead(f.b, cborUint, v)
	}
}

func (f *fieldWriter) int(k uint64, v int64, omitEmpty bool) {
	if v != 0 || !omitEmpty {
		f.key(k)
		f.b = appendInt(f.b, v)
	}
}

func (f *fieldWriter) text(k uint64, v string, omitEmpty bool) {
	if v != "" || !omitEmpty {
		f.key(k)
		f.b = appendText(f.b, v)
	}
}

// bytes writes a non-empty v (omitempty byte strings only: encMode writes
// a nil one as null).
func (f *fieldWriter) bytes(k uint64, v []byte) {
	if len(v) > 0 {
		f.key(k)
		f.b = appendByteString(f.b, v)
	}
}

func (f *fieldWriter) end() []byte {
	f.b[f.head] = cborMap | byte(f.n)
	return f.b
}

// appendPayloadCBOR appends the encoding of p.
func appendPayloadCBOR(b []byte, p *Payload) ([]byte, bool) {
	d := p.Decoded
	if d != nil && len(d.Detail) > 0 {
		return b, false
	}
	f := beginMap(b)
	f.text(1, p.SessionID, false)
	f.int(2, int64(p.First), false)
	f.int(3, int64(p.Last), true)
	f.uint(4, uint64(p.Direction), false)
	f.uint(5, p.Bytes, false)
	f.bytes(6, p.Raw)
	if d != nil {
		f.key(7)
		f.b = appendDecodedCBOR(f.b, d)
	}
	return f.end(), true
}

// appendDecodedCBOR appends the encoding of d, which has no Detail.
func appendDecodedCBOR(b []byte, d *Decoded) []byte {
	f := beginMap(b)
	f.text(1, d.Protocol, false)
	f.uint(2, d.Transaction, true)
	f.uint(3, uint64(d.Unit), true)
	f.uint(4, uint64(d.Function), true)
	f.text(5, d.FunctionName, true)
	f.text(6, d.Table, true)
	f.uint(7, uint64(d.Start), true)
	f.uint(8, uint64(d.Count), true)
	if len(d.Values) > 0 {
		f.key(9)
		f.b = appendHead(f.b, cborArray, uint64(len(d.Values)))
		for _, v := range d.Values {
			f.b = appendInt(f.b, v)
		}
	}
	f.text(10, d.Outcome, true)
	f.int(11, d.Latency, true)
	// 12: Detail, declined by the caller
	f.uint(13, uint64(d.SubFunction), true)
	f.uint(14, uint64(d.WriteStart), true)
	f.uint(15, uint64(d.WriteCount), true)
	f.bytes(16, d.Written)
	f.bytes(17, d.Read)
	f.text(18, d.Verdict, true)
	f.text(19, d.Result, true)
	f.uint(20, uint64(d.Exception), true)
	f.uint(21, uint64(d.DenyException), true)
	f.text(22, d.Reason, true)
	f.bytes(23, d.Refs)
	return f.end()
}
