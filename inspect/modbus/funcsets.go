package modbus

// FunctionSets are the named sets usable in Rules.Functions. Each is a
// list of operations; an operation is a function code, or for function 8
// one diagnostics sub-function and for function 43 one MEI type.
//
//   - read-only: 1, 2, 3, 4 (reads of the four tables) and 24 (read FIFO
//     queue, checked as a read of the 32 holding registers from its
//     pointer on: the count and up to 31 queued registers).
//   - read-write: read-only plus 5, 6, 15, 16 (writes), 22 (mask write) and
//     23 (read/write multiple registers).
//   - diagnostics: operations that only report and change nothing: 7 (read
//     exception status), 8 with sub-functions 0x00 (return query data),
//     0x02 (return diagnostic register) and 0x0B-0x12 (counters), 11 and
//     12 (comm event counter and log), 17 (report server id), 43/14 (read
//     device identification).
//   - programming: operations that reconfigure, restart or reprogram a
//     device: 8 with sub-functions 0x01 (restart communications), 0x03
//     (change ASCII delimiter), 0x04 (force listen only mode), 0x0A
//     (clear counters), 0x14 (clear overrun counter); 20 and 21 (file
//     records, used for program and configuration transfer); 43/13
//     (CANopen general reference); the user-defined codes 65-72 and
//     100-110; and 90 (Schneider UMAS, PLC programming).
//
// A bare number or function name allows that code with every
// sub-function or MEI type ("8" allows every diagnostics sub-function).
// A set's name wins over a function's: "diagnostics" is the set above
// (the read-only diagnostics), not function 8 with every sub-function;
// write "8" for that.
// Codes in none of these sets (reserved ones) can only be allowed by number.
var FunctionSets = map[string][]Op{
	"read-only": {
		{Function: FuncReadCoils}, {Function: FuncReadDiscreteInputs},
		{Function: FuncReadHoldingRegisters}, {Function: FuncReadInputRegisters},
		{Function: FuncReadFIFOQueue},
	},
	"read-write": nil, // read-only + writes, filled in init
	"diagnostics": {
		{Function: FuncReadExceptionStatus},
		diagOp(DiagReturnQueryData), diagOp(DiagReturnDiagnosticRegister),
		diagOp(DiagReturnBusMessageCount), diagOp(DiagReturnBusCommErrorCount),
		diagOp(DiagReturnBusExceptionCount), diagOp(DiagReturnServerMessageCount),
		diagOp(DiagReturnServerNoResponse), diagOp(DiagReturnServerNAKCount),
		diagOp(DiagReturnServerBusyCount), diagOp(DiagReturnBusCharOverrunCount),
		{Function: FuncGetCommEventCounter}, {Function: FuncGetCommEventLog},
		{Function: FuncReportServerID},
		{Function: FuncEncapsulatedInterface, Sub: MEIReadDeviceIdentification, HasSub: true},
	},
	"programming": nil, // filled in init
}

func init() {
	rw := append([]Op(nil), FunctionSets["read-only"]...)
	for _, f := range []Function{FuncWriteSingleCoil, FuncWriteSingleRegister, FuncWriteMultipleCoils,
		FuncWriteMultipleRegisters, FuncMaskWriteRegister, FuncReadWriteMultipleRegisters} {
		rw = append(rw, Op{Function: f})
	}
	FunctionSets["read-write"] = rw
	prog := []Op{
		diagOp(DiagRestartCommunications), diagOp(DiagChangeASCIIInputDelimiter),
		diagOp(DiagForceListenOnlyMode), diagOp(DiagClearCounters), diagOp(DiagClearOverrunCounterAndFlag),
		{Function: FuncReadFileRecord}, {Function: FuncWriteFileRecord},
		{Function: FuncEncapsulatedInterface, Sub: MEICANopen, HasSub: true},
		{Function: 90},
	}
	for f := 65; f <= 72; f++ {
		prog = append(prog, Op{Function: Function(f)})
	}
	for f := 100; f <= 110; f++ {
		prog = append(prog, Op{Function: Function(f)})
	}
	FunctionSets["programming"] = prog
}

// Op is one operation: a function, or one sub-function of 8 / MEI type of 43.
type Op struct {
	Function Function
	Sub      uint16
	HasSub   bool
}

func diagOp(sub uint16) Op { return Op{Function: FuncDiagnostics, Sub: sub, HasSub: true} }
