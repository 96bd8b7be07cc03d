package modbus

import (
	"encoding/binary"
	"fmt"
	"strconv"

	"github.com/otgate/otgate/audit"
)

// AuditPayload turns the decoded transaction r of session sessionID into
// the audit log's payload record. It stores fields, not the transcript
// line: RecordOf gives the Record back and Record.AppendText renders the
// line with the user and asset of the session's start record. The
// payload's slices alias r's, which the Sink contract makes valid only
// during the Sink call: encode it (append it to the log) before returning.
//
// dec, if not nil, is overwritten and used as the payload's Decoded (its
// Values' storage reused): a sink that appends each payload before the
// next call keeps one per session instead of allocating one per record.
func AuditPayload(sessionID string, r *Record, dec *audit.Decoded) audit.Payload {
	var values []int64
	if dec == nil {
		dec = new(audit.Decoded)
	} else {
		values = dec.Values[:0]
	}
	*dec = audit.Decoded{
		Protocol:      "modbus",
		Transaction:   uint64(r.TransactionID),
		Unit:          uint32(r.Unit),
		Function:      uint32(r.Function),
		FunctionName:  r.Function.String(),
		Table:         r.Table.String(),
		Start:         uint32(r.Address),
		Count:         uint32(r.Count),
		Latency:       int64(r.Latency()),
		SubFunction:   uint32(r.SubFunction),
		WriteStart:    uint32(r.WriteAddress),
		WriteCount:    uint32(r.WriteCount),
		Written:       r.Written,
		Read:          r.ReadValues,
		Refs:          r.Refs,
		Result:        r.Outcome.String(),
		Exception:     uint32(r.Exception),
		DenyException: uint32(r.DenyException),
		Reason:        r.Reason,
	}
	if r.Verdict != VerdictNone {
		dec.Verdict = r.Verdict.String()
	}
	switch r.Outcome {
	case OutcomeOK:
		dec.Outcome = "ok"
	case OutcomeException:
		dec.Outcome = "exception " + strconv.Itoa(int(r.Exception))
	default:
		dec.Outcome = r.Outcome.String()
	}
	if r.Verdict == VerdictDenied || r.Verdict == VerdictWouldDeny {
		dec.Outcome = r.Verdict.String() + ": " + r.Reason + " (" + dec.Outcome + ")"
	}
	// Values are the registers of Table Start+Count (the generic line,
	// which the syslog export sends, reads them so): a read/write's Start
	// and Count are its read span, so its values are those read, not
	// those written at WriteStart; a mask write's masks are no register's
	// value (both stay in Written).
	if (r.Table == TableHoldingRegisters || r.Table == TableInputRegisters) && r.Function != FuncMaskWriteRegister {
		vals := r.Written
		if len(vals) == 0 || r.Function == FuncReadWriteMultipleRegisters {
			vals = r.ReadValues
		}
		for i := 0; i+1 < len(vals); i += 2 {
			values = append(values, int64(binary.BigEndian.Uint16(vals[i:])))
		}
		if len(values) > 0 {
			dec.Values = values
		}
	}
	// A read FIFO queue's values are the queue, not registers from its
	// pointer on: no table span, the values alone, and the pointer and
	// FIFO count in Detail ("read-fifo-queue = [99] ok ... fifo-count=1
	// fifo-pointer=16"); RecordOf restores the table and count.
	if r.Function == FuncReadFIFOQueue && r.Verdict != VerdictNone {
		dec.Table, dec.Count = "", 0
		dec.Detail = map[string]string{detailFIFOPointer: strconv.Itoa(int(r.Address))}
		if r.Outcome == OutcomeOK {
			dec.Detail[detailFIFOCount] = strconv.Itoa(len(r.ReadValues) / 2)
		}
	}
	p := audit.Payload{SessionID: sessionID, First: audit.TimestampOf(r.RequestTime), Last: audit.TimestampOf(r.ResponseTime),
		Direction: audit.ToAsset, Decoded: dec}
	if p.First == 0 {
		p.First, p.Direction = p.Last, audit.ToClient
	}
	return p
}

// Detail keys of a read FIFO queue payload (AuditPayload), which the
// generic line shows: the FIFO pointer, and the FIFO count of a queue read.
const (
	detailFIFOPointer = "fifo-pointer"
	detailFIFOCount   = "fifo-count"
)

// RecordOf returns the transaction an AuditPayload record describes. It
// fails, naming the field, for a payload that is not a Modbus decoded
// record with the transaction fields (those written before the fields
// existed carry their line in Decoded.Detail["text"] instead). The
// record's times are in UTC.
func RecordOf(p audit.Payload) (Record, error) {
	d := p.Decoded
	var r Record
	switch {
	case d == nil:
		return r, fmt.Errorf("payload of session %s: not decoded", p.SessionID)
	case d.Protocol != "modbus":
		return r, fmt.Errorf("payload of session %s: protocol %q, not modbus", p.SessionID, d.Protocol)
	case d.Result == "":
		return r, fmt.Errorf("payload of session %s, transaction %d: no result field (a record from before structured transcripts)", p.SessionID, d.Transaction)
	}
	bad := func(field string, v any) error {
		return fmt.Errorf("payload of session %s, transaction %d: %s %v out of range", p.SessionID, d.Transaction, field, v)
	}
	if d.Transaction > 0xFFFF {
		return r, bad("transaction", d.Transaction)
	}
	for _, f := range []struct {
		name string
		v    uint32
		max  uint32
	}{{"unit", d.Unit, 0xFF}, {"function", d.Function, 0xFF}, {"sub-function", d.SubFunction, 0xFFFF},
		{"start", d.Start, 0xFFFF}, {"count", d.Count, 0xFFFF}, {"write start", d.WriteStart, 0xFFFF},
		{"write count", d.WriteCount, 0xFFFF}, {"exception", d.Exception, 0xFF}, {"deny exception", d.DenyException, 0xFF}} {
		if f.v > f.max {
			return r, bad(f.name, f.v)
		}
	}
	r = Record{TransactionID: uint16(d.Transaction), Unit: uint8(d.Unit), Function: Function(d.Function),
		SubFunction: uint16(d.SubFunction), Address: uint16(d.Start), Count: uint16(d.Count),
		WriteAddress: uint16(d.WriteStart), WriteCount: uint16(d.WriteCount), Written: d.Written, ReadValues: d.Read, Refs: d.Refs,
		Exception: ExceptionCode(d.Exception), DenyException: ExceptionCode(d.DenyException), Reason: d.Reason}
	var ok bool
	if r.Table, ok = lookupName[Table](tableNames[:], d.Table); !ok {
		return r, fmt.Errorf("payload of session %s, transaction %d: unknown table %q", p.SessionID, d.Transaction, d.Table)
	}
	if r.Function == FuncReadFIFOQueue && d.Verdict != "" && r.Table == TableNone {
		// AuditPayload leaves a FIFO read's table and count out (records
		// written before did not): its table is holding, its count the
		// registers the queue returned.
		r.Table, r.Count = TableHoldingRegisters, uint16(len(d.Read)/2)
	}
	if r.Outcome, ok = lookupName[Outcome](outcomeNames[:], d.Result); !ok {
		return r, fmt.Errorf("payload of session %s, transaction %d: unknown result %q", p.SessionID, d.Transaction, d.Result)
	}
	if d.Verdict != "" {
		if r.Verdict, ok = lookupName[Verdict](verdictNames[:], d.Verdict); !ok || r.Verdict == VerdictNone {
			return r, fmt.Errorf("payload of session %s, transaction %d: unknown verdict %q", p.SessionID, d.Transaction, d.Verdict)
		}
	}
	if p.Direction == audit.ToClient {
		r.ResponseTime = p.First.Time()
	} else {
		r.RequestTime, r.ResponseTime = p.First.Time(), p.Last.Time()
	}
	return r, nil
}

// PairKey pairs the two records of a transaction recorded before it was
// forwarded (RecordedBeforeForwarding), for a viewer of the log
// (audit.ShowOptions.Pairers): the OutcomeForwarded record (forwarded
// true) and the record that completes it (its response, or "no response"
// at the session's end) return the same key, made of the session id, the
// request time (to the nanosecond, as recorded) and the request's
// decoded fields. ok is false for every other payload: reads, denied
// requests, unsolicited responses, other protocols, and records from
// before structured transcripts.
func PairKey(p audit.Payload) (key string, forwarded, ok bool) {
	if p.Direction != audit.ToAsset || p.Decoded == nil || p.Decoded.Protocol != "modbus" {
		return "", false, false
	}
	r, err := RecordOf(p)
	if err != nil || (r.Verdict != VerdictAllowed && r.Verdict != VerdictWouldDeny) ||
		!RecordedBeforeForwarding(r.Function, r.SubFunction) {
		return "", false, false
	}
	key = fmt.Sprintf("%s|%d|%d|%d|%d|%d|%s|%d|%d|%d|%d|%s|%x", p.SessionID, p.First, r.TransactionID, r.Unit,
		r.Function, r.SubFunction, r.Table, r.Address, r.Count, r.WriteAddress, r.WriteCount, r.Verdict, r.Written)
	return key, r.Outcome == OutcomeForwarded, true
}

// lookupName returns the index of name in names, as T.
func lookupName[T ~uint8](names []string, name string) (T, bool) {
	for i, n := range names {
		if n == name {
			return T(i), true
		}
	}
	return 0, false
}
