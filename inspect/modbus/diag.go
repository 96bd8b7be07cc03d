package modbus

// Diagnostics (function 8) sub-functions of the specification (6.8).
const (
	DiagReturnQueryData            = 0x00
	DiagRestartCommunications      = 0x01
	DiagReturnDiagnosticRegister   = 0x02
	DiagChangeASCIIInputDelimiter  = 0x03
	DiagForceListenOnlyMode        = 0x04
	DiagClearCounters              = 0x0A
	DiagReturnBusMessageCount      = 0x0B
	DiagReturnBusCommErrorCount    = 0x0C
	DiagReturnBusExceptionCount    = 0x0D
	DiagReturnServerMessageCount   = 0x0E
	DiagReturnServerNoResponse     = 0x0F
	DiagReturnServerNAKCount       = 0x10
	DiagReturnServerBusyCount      = 0x11
	DiagReturnBusCharOverrunCount  = 0x12
	DiagClearOverrunCounterAndFlag = 0x14
)

type diagInfo struct {
	name string
	// readOnly: the sub-function only reports, it changes nothing on the
	// device. The others restart, silence or clear the device.
	readOnly bool
}

var diagSubs = map[uint16]diagInfo{
	DiagReturnQueryData:            {"return-query-data", true},
	DiagRestartCommunications:      {"restart-communications", false},
	DiagReturnDiagnosticRegister:   {"return-diagnostic-register", true},
	DiagChangeASCIIInputDelimiter:  {"change-ascii-input-delimiter", false},
	DiagForceListenOnlyMode:        {"force-listen-only-mode", false},
	DiagClearCounters:              {"clear-counters", false},
	DiagReturnBusMessageCount:      {"return-bus-message-count", true},
	DiagReturnBusCommErrorCount:    {"return-bus-comm-error-count", true},
	DiagReturnBusExceptionCount:    {"return-bus-exception-count", true},
	DiagReturnServerMessageCount:   {"return-server-message-count", true},
	DiagReturnServerNoResponse:     {"return-server-no-response-count", true},
	DiagReturnServerNAKCount:       {"return-server-nak-count", true},
	DiagReturnServerBusyCount:      {"return-server-busy-count", true},
	DiagReturnBusCharOverrunCount:  {"return-bus-char-overrun-count", true},
	DiagClearOverrunCounterAndFlag: {"clear-overrun-counter-and-flag", false},
}

// DiagSubFunctionName names a diagnostics sub-function, "" if the
// specification does not define it.
func DiagSubFunctionName(sub uint16) string { return diagSubs[sub].name }

// diagEchoes reports whether the response data of sub echoes the request data.
func diagEchoes(sub uint16) bool {
	switch sub {
	case DiagReturnQueryData, DiagRestartCommunications, DiagChangeASCIIInputDelimiter,
		DiagClearCounters, DiagClearOverrunCounterAndFlag:
		return true
	}
	return false
}

// parseDiagRequest validates the data of a diagnostics request for sub.
// Unknown sub-functions are well-formed (a device answers them with
// exception 01); the caller marks them.
func parseDiagRequest(sub uint16, data []byte) error {
	f := FuncDiagnostics
	switch sub {
	case DiagReturnQueryData:
		return nil // any data, echoed back
	case DiagRestartCommunications:
		if len(data) != 2 {
			return reqErr(f, "sub-function 0x01: data is %d bytes, want 2", len(data))
		}
		if v := be16(data); v != 0x0000 && v != 0xFF00 {
			return illegalValue(f, "sub-function 0x01: data 0x%04x, want 0x0000 or 0xff00", v)
		}
	case DiagChangeASCIIInputDelimiter:
		if len(data) != 2 {
			return reqErr(f, "sub-function 0x03: data is %d bytes, want 2", len(data))
		}
		if data[1] != 0 {
			return illegalValue(f, "sub-function 0x03: second data byte 0x%02x, want 0x00", data[1])
		}
	default:
		if _, ok := diagSubs[sub]; !ok {
			return nil
		}
		if len(data) != 2 {
			return reqErr(f, "sub-function 0x%02x: data is %d bytes, want 2", sub, len(data))
		}
		if v := be16(data); v != 0 {
			return illegalValue(f, "sub-function 0x%02x: data 0x%04x, want 0x0000", sub, v)
		}
	}
	return nil
}
