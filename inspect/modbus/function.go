package modbus

import "strconv"

// Function is a Modbus function code (without the exception bit).
type Function uint8

// Public function codes of the Modbus Application Protocol v1.1b3.
const (
	FuncReadCoils                  Function = 1
	FuncReadDiscreteInputs         Function = 2
	FuncReadHoldingRegisters       Function = 3
	FuncReadInputRegisters         Function = 4
	FuncWriteSingleCoil            Function = 5
	FuncWriteSingleRegister        Function = 6
	FuncReadExceptionStatus        Function = 7
	FuncDiagnostics                Function = 8
	FuncGetCommEventCounter        Function = 11
	FuncGetCommEventLog            Function = 12
	FuncWriteMultipleCoils         Function = 15
	FuncWriteMultipleRegisters     Function = 16
	FuncReportServerID             Function = 17
	FuncReadFileRecord             Function = 20
	FuncWriteFileRecord            Function = 21
	FuncMaskWriteRegister          Function = 22
	FuncReadWriteMultipleRegisters Function = 23
	FuncReadFIFOQueue              Function = 24
	FuncEncapsulatedInterface      Function = 43
)

// MEI types carried by function 43.
const (
	MEICANopen                  = 13
	MEIReadDeviceIdentification = 14
)

// exceptionBit marks an exception response: function | 0x80.
const exceptionBit = 0x80

var functionNames = [256]string{
	FuncReadCoils:                  "read-coils",
	FuncReadDiscreteInputs:         "read-discrete-inputs",
	FuncReadHoldingRegisters:       "read-holding-registers",
	FuncReadInputRegisters:         "read-input-registers",
	FuncWriteSingleCoil:            "write-single-coil",
	FuncWriteSingleRegister:        "write-single-register",
	FuncReadExceptionStatus:        "read-exception-status",
	FuncDiagnostics:                "diagnostics",
	FuncGetCommEventCounter:        "get-comm-event-counter",
	FuncGetCommEventLog:            "get-comm-event-log",
	FuncWriteMultipleCoils:         "write-multiple-coils",
	FuncWriteMultipleRegisters:     "write-multiple-registers",
	FuncReportServerID:             "report-server-id",
	FuncReadFileRecord:             "read-file-record",
	FuncWriteFileRecord:            "write-file-record",
	FuncMaskWriteRegister:          "mask-write-register",
	FuncReadWriteMultipleRegisters: "read-write-multiple-registers",
	FuncReadFIFOQueue:              "read-fifo-queue",
	FuncEncapsulatedInterface:      "encapsulated-interface-transport",
}

// FunctionClass says what the specification says about a function code.
type FunctionClass uint8

// Function classes.
const (
	ClassInvalid     FunctionClass = iota // 0 and 128-255: never a request function
	ClassPublic                           // defined by the specification
	ClassUserDefined                      // 65-72 and 100-110
	ClassReserved                         // any other code in 1-127: not defined here
)

// Class returns the class of f.
func (f Function) Class() FunctionClass {
	switch {
	case f == 0 || f >= 0x80:
		return ClassInvalid
	case functionNames[f] != "":
		return ClassPublic
	case f >= 65 && f <= 72, f >= 100 && f <= 110:
		return ClassUserDefined
	}
	return ClassReserved
}

// String returns the canonical name ("read-holding-registers"), or
// "user-defined-65" / "function-90" for codes without one.
func (f Function) String() string {
	if n := functionNames[f]; n != "" {
		return n
	}
	if f.Class() == ClassUserDefined {
		return "user-defined-" + strconv.Itoa(int(f))
	}
	return "function-" + strconv.Itoa(int(f))
}

// FunctionByName returns the code for a canonical name from String.
func FunctionByName(name string) (Function, bool) {
	for i, n := range functionNames {
		if n != "" && n == name {
			return Function(i), true
		}
	}
	return 0, false
}

// Table is one of the four Modbus data tables (or none).
type Table uint8

// Data tables.
const (
	TableNone Table = iota
	TableCoils
	TableDiscreteInputs
	TableHoldingRegisters
	TableInputRegisters
	TableFileRecords
)

var tableNames = [...]string{"", "coil", "discrete", "holding", "input", "file"}

// String returns the short name used in transcripts: coil, discrete,
// holding, input, file.
func (t Table) String() string {
	if int(t) < len(tableNames) {
		return tableNames[t]
	}
	return "table-" + strconv.Itoa(int(t))
}

// isBits reports whether values of t are single bits.
func (t Table) isBits() bool { return t == TableCoils || t == TableDiscreteInputs }

// ExceptionCode is the code of an exception response.
type ExceptionCode uint8

// Exception codes of the specification.
const (
	ExIllegalFunction         ExceptionCode = 0x01
	ExIllegalDataAddress      ExceptionCode = 0x02
	ExIllegalDataValue        ExceptionCode = 0x03
	ExServerDeviceFailure     ExceptionCode = 0x04
	ExAcknowledge             ExceptionCode = 0x05
	ExServerDeviceBusy        ExceptionCode = 0x06
	ExMemoryParityError       ExceptionCode = 0x08
	ExGatewayPathUnavailable  ExceptionCode = 0x0A
	ExGatewayTargetNoResponse ExceptionCode = 0x0B
)

var exceptionNames = [256]string{
	ExIllegalFunction:         "illegal function",
	ExIllegalDataAddress:      "illegal data address",
	ExIllegalDataValue:        "illegal data value",
	ExServerDeviceFailure:     "server device failure",
	ExAcknowledge:             "acknowledge",
	ExServerDeviceBusy:        "server device busy",
	ExMemoryParityError:       "memory parity error",
	ExGatewayPathUnavailable:  "gateway path unavailable",
	ExGatewayTargetNoResponse: "gateway target device failed to respond",
}

// Known reports whether the specification defines e.
func (e ExceptionCode) Known() bool { return exceptionNames[e] != "" }

// String returns "02 illegal data address" (two hex digits and the name).
func (e ExceptionCode) String() string {
	const hexd = "0123456789abcdef"
	s := string([]byte{hexd[e>>4], hexd[e&15]})
	if n := exceptionNames[e]; n != "" {
		return s + " " + n
	}
	return s + " unknown exception"
}
