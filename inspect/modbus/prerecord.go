package modbus

// RecordedBeforeForwarding reports whether a request of function f (with
// diagnostics sub-function or MEI type sub) is recorded before its bytes
// are forwarded (a record with OutcomeForwarded), not only when its
// response arrives. This is the one place that names the set.
//
// A request that may change the device's state must be in the log before
// the device can act on it: a write that reached a PLC and is in no
// record (the gate crashed between forwarding it and its response) is the
// worst gap an auditor can find. A read costs one record, at its response,
// so the read path (most of the traffic) is unchanged.
//
// The set is everything except an explicit list of reads, so that a code
// whose meaning the gate does not know is recorded first (fail closed).
// Reads, recorded once at the response:
//
//   - 1, 2, 3, 4: read coils, discrete inputs, holding and input registers;
//   - 7, 11, 12, 17: read exception status, get comm event counter and
//     log, report server id (status only);
//   - 20: read file record (reads; the programming set allows it, because
//     a program can be read out, but reading changes nothing);
//   - 24: read FIFO queue (returns the queue; the specification does not
//     have it remove entries);
//   - 8 with the sub-functions that only report: 0x00 (return query data,
//     an echo), 0x02 (return diagnostic register), 0x0B-0x12 (counters);
//   - 43 with MEI type 14 (read device identification).
//
// Recorded before forwarding, everything else, namely:
//
//   - 5, 6, 15, 16: write single/multiple coils and registers;
//   - 22 mask write register, 23 read/write multiple registers (writes
//     before it reads), 21 write file record;
//   - 8 with 0x01 (restart communications), 0x03 (change ASCII input
//     delimiter), 0x04 (force listen only mode: the device stops
//     answering, so its transaction never has a response), 0x0A (clear
//     counters and diagnostic register), 0x14 (clear overrun counter and
//     flag), and any sub-function the specification does not define;
//   - 43 with MEI type 13 (CANopen general reference: reads and writes
//     CANopen objects) or any other MEI type;
//   - user-defined codes (65-72, 100-110) and every other code
//     (vendor protocols such as 90, Schneider UMAS, program PLCs).
func RecordedBeforeForwarding(f Function, sub uint16) bool {
	switch f {
	case FuncReadCoils, FuncReadDiscreteInputs, FuncReadHoldingRegisters, FuncReadInputRegisters,
		FuncReadExceptionStatus, FuncGetCommEventCounter, FuncGetCommEventLog, FuncReportServerID,
		FuncReadFileRecord, FuncReadFIFOQueue:
		return false
	case FuncDiagnostics:
		info, known := diagSubs[sub]
		return !known || !info.readOnly
	case FuncEncapsulatedInterface:
		return sub != MEIReadDeviceIdentification
	}
	return true
}
