package modbus

import (
	"github.com/otgate/otgate/audit"
	"strconv"
	"time"
)

// maxValuesShown bounds the values a transcript line lists.
const maxValuesShown = 16

// String renders the record without user and asset.
func (r *Record) String() string { return string(r.AppendText(nil, "", "")) }

// AppendText appends the transcript line of r, e.g.
//
//	14:03:04.120 alice plc-7 unit 1 write holding 52 = 55 -> ok (1.2 ms)
//	14:03:05.004 alice plc-7 unit 1 read holding 0..2 -> ok = 10 20 30 (0.8 ms)
//	14:03:06.310 alice plc-7 unit 1 write holding 60 = 1 -> denied, exception 02 illegal data address: modbus rules "g": ...
//
// user and asset are left out when empty. The time is printed in the
// location RequestTime carries. A record of OutcomeForwarded (a request
// recorded before it was forwarded) ends in "-> forwarded".
func (r *Record) AppendText(b []byte, user, asset string) []byte {
	return r.appendText(b, user, asset, false)
}

// AppendUnanswered is AppendText for a record of OutcomeForwarded that no
// later record completes (a viewer of the whole log knows): the gate
// stopped after it forwarded the request, before it recorded the response,
// e.g. "14:03:04.120 alice plc-7 unit 1 write holding 52 = 55 -> forwarded,
// no response recorded (gate stopped?)".
func (r *Record) AppendUnanswered(b []byte, user, asset string) []byte {
	return r.appendText(b, user, asset, true)
}

func (r *Record) appendText(b []byte, user, asset string, unanswered bool) []byte {
	t := r.RequestTime
	if t.IsZero() {
		t = r.ResponseTime
	}
	b = t.AppendFormat(b, "15:04:05.000")
	for _, s := range [...]string{user, asset} {
		if s != "" {
			b = append(b, ' ')
			b = append(b, s...)
		}
	}
	b = append(b, " unit "...)
	b = strconv.AppendUint(b, uint64(r.Unit), 10)
	b = append(b, ' ')
	b = r.appendOperation(b)
	b = append(b, " -> "...)
	switch r.Verdict {
	case VerdictDenied:
		b = append(b, "denied, exception "...)
		b = append(b, r.Exception.String()...)
		b = append(b, ": "...)
		return append(b, r.Reason...)
	}
	switch r.Outcome {
	case OutcomeOK:
		b = append(b, "ok"...)
		if len(r.ReadValues) > 0 {
			b = append(b, " ="...)
			b = r.appendValues(b, r.ReadValues, r.Table.isBits(), int(r.Count))
		}
	case OutcomeException:
		b = append(b, "exception "...)
		b = append(b, r.Exception.String()...)
	case OutcomeNoResponse:
		b = append(b, "no response"...)
	case OutcomeMalformed:
		b = append(b, "malformed response: "...)
		b = append(b, r.Reason...)
	case OutcomeForwarded:
		b = append(b, "forwarded"...)
		if unanswered {
			b = append(b, ", no response recorded (gate stopped?)"...)
		}
	case OutcomeUnsolicited:
		b = append(b, "unsolicited response"...)
		if r.Exception != 0 {
			b = append(b, ", exception "...)
			b = append(b, r.Exception.String()...)
		}
	}
	if d := r.Latency(); d > 0 {
		b = append(b, " ("...)
		b = appendMillis(b, d)
		b = append(b, " ms)"...)
	}
	if r.Verdict == VerdictWouldDeny {
		b = append(b, " [would deny, exception "...)
		b = append(b, r.DenyException.String()...)
		b = append(b, ": "...)
		b = append(b, r.Reason...)
		b = append(b, ']')
	}
	return b
}

// describe is the line without its time: "unit 1 write holding 52 = 55".
func (r *Record) describe() string {
	b := append([]byte("unit "), strconv.AppendUint(nil, uint64(r.Unit), 10)...)
	b = append(b, ' ')
	return string(r.appendOperation(b))
}

func appendMillis(b []byte, d time.Duration) []byte {
	ms := float64(d) / float64(time.Millisecond)
	prec := 1
	if ms < 0.1 {
		prec = 3
	}
	return strconv.AppendFloat(b, ms, 'f', prec, 64)
}

func appendSpan(b []byte, addr, count uint16) []byte {
	b = strconv.AppendUint(b, uint64(addr), 10)
	if count > 1 {
		b = append(b, ".."...)
		b = strconv.AppendUint(b, uint64(addr)+uint64(count)-1, 10)
	}
	return b
}

func (r *Record) appendOperation(b []byte) []byte {
	if r.Verdict == VerdictNone {
		// a response without request: only its header is known
		b = append(b, r.Function.String()...)
		b = append(b, " transaction "...)
		return strconv.AppendUint(b, uint64(r.TransactionID), 10)
	}
	switch r.Function {
	case FuncReadCoils, FuncReadDiscreteInputs, FuncReadHoldingRegisters, FuncReadInputRegisters:
		b = append(b, "read "...)
		b = append(b, r.Table.String()...)
		b = append(b, ' ')
		return appendSpan(b, r.Address, r.Count)
	case FuncReadFIFOQueue:
		b = append(b, "read fifo holding "...)
		return strconv.AppendUint(b, uint64(r.Address), 10)
	case FuncWriteSingleCoil:
		b = append(b, "write coil "...)
		b = strconv.AppendUint(b, uint64(r.Address), 10)
		switch {
		case len(r.Written) == 2 && be16(r.Written) == 0xFF00:
			return append(b, " = on"...)
		case len(r.Written) == 2 && be16(r.Written) == 0x0000:
			return append(b, " = off"...)
		case len(r.Written) == 2: // an illegal request: neither
			b = append(b, " = 0x"...)
			return appendHex16(b, be16(r.Written))
		}
		return append(b, " = off"...)
	case FuncWriteSingleRegister, FuncWriteMultipleCoils, FuncWriteMultipleRegisters:
		b = append(b, "write "...)
		b = append(b, r.Table.String()...)
		b = append(b, ' ')
		b = appendSpan(b, r.Address, r.Count)
		b = append(b, " ="...)
		return r.appendValues(b, r.Written, r.Table.isBits(), int(r.Count))
	case FuncMaskWriteRegister:
		b = append(b, "mask write holding "...)
		b = strconv.AppendUint(b, uint64(r.Address), 10)
		if len(r.Written) == 4 {
			b = append(b, " and 0x"...)
			b = appendHex16(b, be16(r.Written))
			b = append(b, " or 0x"...)
			b = appendHex16(b, be16(r.Written[2:]))
		}
		return b
	case FuncReadWriteMultipleRegisters:
		b = append(b, "read/write holding read "...)
		b = appendSpan(b, r.Address, r.Count)
		b = append(b, " write "...)
		b = appendSpan(b, r.WriteAddress, r.WriteCount)
		b = append(b, " ="...)
		return r.appendValues(b, r.Written, false, int(r.WriteCount))
	case FuncDiagnostics:
		b = append(b, "diagnostics "...)
		if n := DiagSubFunctionName(r.SubFunction); n != "" {
			b = append(b, n...)
		} else {
			b = append(b, "sub-function 0x"...)
			b = appendHex16(b, r.SubFunction)
		}
		return appendData(b, r.Written)
	case FuncEncapsulatedInterface:
		switch r.SubFunction {
		case MEIReadDeviceIdentification:
			b = append(b, "read-device-identification"...)
		case MEICANopen:
			b = append(b, "canopen-general-reference"...)
		default:
			b = append(b, "encapsulated-interface-transport mei "...)
			b = strconv.AppendUint(b, uint64(r.SubFunction), 10)
		}
		return appendData(b, r.Written)
	case FuncWriteFileRecord:
		b = append(b, r.Function.String()...)
		if out, ok := appendFileRecords(b, r.Written); ok {
			return out
		}
		b = append(b, ' ')
		b = strconv.AppendUint(b, uint64(r.Count), 10)
		b = append(b, " sub-requests"...)
		return appendData(b, r.Written)
	case FuncReadFileRecord:
		b = append(b, r.Function.String()...)
		if out, ok := appendFileRefs(b, r.Refs); ok {
			return out
		}
		b = append(b, ' ')
		b = strconv.AppendUint(b, uint64(r.Count), 10)
		b = append(b, " sub-requests"...)
		return appendData(b, r.Refs)
	}
	b = append(b, r.Function.String()...)
	return appendData(b, r.Written)
}

// maxDataShown bounds the raw data bytes a transcript line shows in hex.
const maxDataShown = 32

// appendData appends " data 0a0b..." for the raw data of a request, if any.
func appendData(b, data []byte) []byte {
	if len(data) == 0 {
		return b
	}
	const hexd = "0123456789abcdef"
	b = append(b, " data "...)
	for _, c := range data[:min(len(data), maxDataShown)] {
		b = append(b, hexd[c>>4], hexd[c&15])
	}
	if len(data) > maxDataShown {
		b = append(b, "... ("...)
		b = strconv.AppendInt(b, int64(len(data)), 10)
		b = append(b, " bytes)"...)
	}
	return b
}

// appendFileRecords appends the sub-requests of a write file record,
// " file 4 record 7 = 1711 1214; file 5 record 0 = 2", or reports that
// data is not a well-formed list of them.
func appendFileRecords(b, data []byte) ([]byte, bool) {
	start := len(b)
	shown := 0
	for i := 0; len(data) > 0; i++ {
		if len(data) < 7 || data[0] != fileRefType {
			return b[:start], false
		}
		n := 2 * int(be16(data[5:]))
		if len(data)-7 < n {
			return b[:start], false
		}
		if i > 0 {
			b = append(b, ';')
		}
		b = append(b, " file "...)
		b = strconv.AppendUint(b, uint64(be16(data[1:])), 10)
		b = append(b, " record "...)
		b = strconv.AppendUint(b, uint64(be16(data[3:])), 10)
		b = append(b, " ="...)
		vals := data[7 : 7+n]
		for j := 0; j+1 < len(vals); j += 2 {
			if shown == maxValuesShown {
				b = append(b, " ..."...)
				break
			}
			b = append(b, ' ')
			b = strconv.AppendUint(b, uint64(be16(vals[j:])), 10)
			shown++
		}
		data = data[7+n:]
	}
	return b, len(b) > start
}

// appendFileRefs appends the sub-requests of a read file record,
// " file 4 record 1 x2; file 3 record 9 x2" (x: records asked for), or
// reports that data is not a well-formed list of them.
func appendFileRefs(b, data []byte) ([]byte, bool) {
	if len(data) == 0 || len(data)%7 != 0 {
		return b, false
	}
	start := len(b)
	for i := 0; i+7 <= len(data); i += 7 {
		if data[i] != fileRefType {
			return b[:start], false
		}
		if i > 0 {
			b = append(b, ';')
		}
		b = append(b, " file "...)
		b = strconv.AppendUint(b, uint64(be16(data[i+1:])), 10)
		b = append(b, " record "...)
		b = strconv.AppendUint(b, uint64(be16(data[i+3:])), 10)
		b = append(b, " x"...)
		b = strconv.AppendUint(b, uint64(be16(data[i+5:])), 10)
	}
	return b, true
}

func appendHex16(b []byte, v uint16) []byte {
	const hexd = "0123456789abcdef"
	return append(b, hexd[v>>12], hexd[v>>8&15], hexd[v>>4&15], hexd[v&15])
}

// appendValues lists register values, or count bits as 1/0.
func (r *Record) appendValues(b, data []byte, bits bool, count int) []byte {
	n := len(data) / 2
	if bits {
		n = min(count, 8*len(data))
	}
	for i := 0; i < n && i < maxValuesShown; i++ {
		b = append(b, ' ')
		if bits {
			b = append(b, '0'+(data[i/8]>>(i%8))&1)
		} else {
			b = strconv.AppendUint(b, uint64(be16(data[2*i:])), 10)
		}
	}
	if n > maxValuesShown {
		b = append(b, " ... ("...)
		b = strconv.AppendInt(b, int64(n), 10)
		b = append(b, " values)"...)
	}
	return b
}

// TranscriptLine is the transcript line of a Modbus payload record (as
// `otgate audit show` prints it and the syslog export sends it), with
// the user and asset of its session: the line the record carries itself
// (records written before the structured fields), or the one its fields
// make ("... -> forwarded, no response recorded (gate stopped?)" for a
// request recorded before it was forwarded). ok is false for a record
// that is not one of the inspector's: render it generically.
func TranscriptLine(p audit.Payload, user, asset string) (line string, ok bool) {
	if p.Decoded != nil {
		if t := p.Decoded.Detail["text"]; t != "" {
			return t, true
		}
	}
	r, err := RecordOf(p)
	if err != nil {
		return "", false
	}
	if r.Outcome == OutcomeForwarded {
		return string(r.AppendUnanswered(nil, user, asset)), true
	}
	return string(r.AppendText(nil, user, asset)), true
}
