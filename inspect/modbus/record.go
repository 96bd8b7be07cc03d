package modbus

import "time"

// Verdict is what the policy said about a request.
type Verdict uint8

// Verdicts.
const (
	VerdictNone      Verdict = iota // no request (unsolicited response)
	VerdictAllowed                  // forwarded
	VerdictDenied                   // answered locally with an exception, never forwarded
	VerdictWouldDeny                // monitor mode: forwarded, enforce mode would deny
)

var verdictNames = [...]string{"none", "allowed", "denied", "would-deny"}

func (v Verdict) String() string { return verdictNames[v] }

// Outcome is how a transaction ended.
type Outcome uint8

// Outcomes.
const (
	OutcomeOK          Outcome = iota // normal response
	OutcomeException                  // exception response (from the device, or the gate's own when denied)
	OutcomeNoResponse                 // none before the session ended, or the slot was reused
	OutcomeMalformed                  // the response broke the specification or did not match the request
	OutcomeUnsolicited                // a response to no outstanding request
	// OutcomeForwarded: not an end. The record of a request that may
	// change the device's state (RecordedBeforeForwarding), handed to the
	// sink before the request's bytes are forwarded; the transaction's
	// record at its response (or "no response" at the session's end)
	// completes it. Both carry the same transaction id, request time and
	// request fields (see PairKey).
	OutcomeForwarded
)

var outcomeNames = [...]string{"ok", "exception", "no-response", "malformed", "unsolicited", "forwarded"}

func (o Outcome) String() string { return outcomeNames[o] }

// Record is one decoded transaction. A Sink receives a pointer that is
// valid only during the call: its slices alias the inspector's buffers,
// so a sink that keeps a record copies it (Clone).
type Record struct {
	RequestTime  time.Time // request judged (zero for an unsolicited response)
	ResponseTime time.Time // response complete or exception sent (zero if none)

	TransactionID uint16
	Unit          uint8
	Function      Function
	SubFunction   uint16 // diagnostics sub-function, MEI type
	Table         Table
	// Address and Count: the span read or written (the read span for 23).
	Address, Count uint16
	// WriteAddress, WriteCount: the write span of 23.
	WriteAddress, WriteCount uint16
	// Written: values the request writes (registers big-endian, packed
	// coils, the 0xFF00/0x0000 of function 5, the masks of 22); for the
	// other requests that may change the device's state
	// (RecordedBeforeForwarding) their data as sent: the sub-requests of
	// 21 (reference type, file, record, length, values), the data after
	// the sub-function of 8 or the MEI type of 43, the data of a
	// user-defined or other code.
	Written []byte
	// ReadValues: values the response returns (registers, packed bits).
	ReadValues []byte
	// Refs: what a read file record (20) asks for, as sent: its
	// sub-requests (reference type, file, record, length; 7 bytes each).
	Refs []byte

	Verdict Verdict
	Outcome Outcome
	// Exception: the exception code of the response (the device's, or
	// the gate's own when denied).
	Exception ExceptionCode
	// DenyException: what the policy answers (denied) or would answer
	// (would-deny) the request with.
	DenyException ExceptionCode
	Rule          string
	// Reason: why the request was (or would be) denied, or what is wrong
	// with the response.
	Reason string
}

// Latency is ResponseTime - RequestTime, 0 if either is missing.
func (r *Record) Latency() time.Duration {
	if r.RequestTime.IsZero() || r.ResponseTime.IsZero() {
		return 0
	}
	return r.ResponseTime.Sub(r.RequestTime)
}

// Clone returns a copy that owns its slices.
func (r *Record) Clone() *Record {
	c := *r
	c.Written = append([]byte(nil), r.Written...)
	c.ReadValues = append([]byte(nil), r.ReadValues...)
	c.Refs = append([]byte(nil), r.Refs...)
	return &c
}

// Sink receives the decoded records of a session. The inspector
// serialises its calls; a call must not block for long, since the
// device-to-client direction waits for it, and the client-to-device
// direction waits for the record of a request recorded before forwarding.
//
// An error means the record is not kept: the session ends (a
// *RecordError), and a request whose OutcomeForwarded record failed is
// not forwarded.
type Sink interface {
	Record(r *Record) error
}

// SinkFunc adapts a function to Sink.
type SinkFunc func(r *Record) error

// Record calls f.
func (f SinkFunc) Record(r *Record) error { return f(r) }

// RecordError says the sink failed to keep a record: the session ends
// (no unlogged transaction).
type RecordError struct {
	// What: the transaction, e.g. "unit 1 write holding 52 = 55 (not
	// forwarded)" or "unit 1 read holding 0..3 -> ok = 1 2 3 4 (0.8 ms)".
	What string
	Err  error
}

func (e *RecordError) Error() string { return e.Err.Error() + " (recording " + e.What + ")" }

func (e *RecordError) Unwrap() error { return e.Err }

// fillRequest copies the request's decoded fields into r.
func (r *Record) fillRequest(req *Request, at time.Time) {
	*r = Record{
		RequestTime:   at,
		TransactionID: req.Header.TransactionID,
		Unit:          req.Header.Unit,
		Function:      req.Function,
		SubFunction:   req.SubFunction,
		Table:         req.Table,
		Address:       req.Address,
		Count:         req.Count,
		WriteAddress:  req.WriteAddress,
		WriteCount:    req.WriteCount,
	}
	switch req.Function {
	case FuncWriteSingleCoil, FuncWriteSingleRegister, FuncWriteMultipleCoils,
		FuncWriteMultipleRegisters, FuncMaskWriteRegister, FuncReadWriteMultipleRegisters:
		r.Written = req.Data
	case FuncReadFileRecord:
		r.Refs = req.Data
	default:
		if RecordedBeforeForwarding(req.Function, req.SubFunction) && len(req.Data) > 0 {
			// Everything else that may change the device's state: what
			// it sent, so that the log says what reached the device.
			r.Written = req.Data
		}
	}
}

// fillResponse copies the response's outcome and values into r.
func (r *Record) fillResponse(resp *Response, at time.Time) {
	r.ResponseTime = at
	if resp.Exception != 0 {
		r.Outcome, r.Exception = OutcomeException, resp.Exception
		return
	}
	r.Outcome = OutcomeOK
	switch resp.Function {
	case FuncReadCoils, FuncReadDiscreteInputs, FuncReadHoldingRegisters,
		FuncReadInputRegisters, FuncReadWriteMultipleRegisters, FuncReadFIFOQueue:
		r.ReadValues = resp.Data
		if resp.Function == FuncReadFIFOQueue {
			r.Count = resp.Count
		}
	}
}
