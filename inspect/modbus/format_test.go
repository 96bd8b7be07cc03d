package modbus

import (
	"testing"
	"time"
)

func TestRecordText(t *testing.T) {
	at := time.Date(2026, 11, 22, 14, 3, 4, 120e6, time.UTC)
	later := at.Add(1200 * time.Microsecond)
	parse := func(h string) *Request {
		var r Request
		if err := r.Parse(adu(5, 1, pdu(t, h))); err != nil {
			t.Fatalf("parse %s: %v", h, err)
		}
		return &r
	}
	resp := func(h string) *Response {
		var r Response
		if err := r.Parse(adu(5, 1, pdu(t, h))); err != nil {
			t.Fatalf("parse %s: %v", h, err)
		}
		return &r
	}
	cases := []struct {
		req, resp string
		verdict   Verdict
		deny      ExceptionCode
		reason    string
		want      string
	}{
		{"06 0034 0037", "06 0034 0037", VerdictAllowed, 0, "", "14:03:04.120 alice plc-7 unit 1 write holding 52 = 55 -> ok (1.2 ms)"},
		{"03 0000 0003", "03 06 000a 0014 001e", VerdictAllowed, 0, "", "14:03:04.120 alice plc-7 unit 1 read holding 0..2 -> ok = 10 20 30 (1.2 ms)"},
		{"01 0000 000a", "01 02 0502", VerdictAllowed, 0, "", "14:03:04.120 alice plc-7 unit 1 read coil 0..9 -> ok = 1 0 1 0 0 0 0 0 0 1 (1.2 ms)"},
		{"05 0003 ff00", "05 0003 ff00", VerdictAllowed, 0, "", "14:03:04.120 alice plc-7 unit 1 write coil 3 = on -> ok (1.2 ms)"},
		{"10 0032 0002 04 0001 0002", "10 0032 0002", VerdictAllowed, 0, "", "14:03:04.120 alice plc-7 unit 1 write holding 50..51 = 1 2 -> ok (1.2 ms)"},
		{"04 0000 0001", "84 02", VerdictAllowed, 0, "", "14:03:04.120 alice plc-7 unit 1 read input 0 -> exception 02 illegal data address (1.2 ms)"},
		{"06 003c 0001", "86 02", VerdictDenied, ExIllegalDataAddress, `modbus rules "g": write holding 60 outside write ranges 50-55`,
			`14:03:04.120 alice plc-7 unit 1 write holding 60 = 1 -> denied, exception 02 illegal data address: modbus rules "g": write holding 60 outside write ranges 50-55`},
		{"06 003c 0001", "06 003c 0001", VerdictWouldDeny, ExIllegalDataAddress, "r",
			"14:03:04.120 alice plc-7 unit 1 write holding 60 = 1 -> ok (1.2 ms) [would deny, exception 02 illegal data address: r]"},
		{"17 0000 0001 0032 0001 02 0007", "17 02 0009", VerdictAllowed, 0, "", "14:03:04.120 alice plc-7 unit 1 read/write holding read 0 write 50 = 7 -> ok = 9 (1.2 ms)"},
		{"16 0004 00f2 0025", "16 0004 00f2 0025", VerdictAllowed, 0, "", "14:03:04.120 alice plc-7 unit 1 mask write holding 4 and 0x00f2 or 0x0025 -> ok (1.2 ms)"},
		{"08 0000 1234", "08 0000 1234", VerdictAllowed, 0, "", "14:03:04.120 alice plc-7 unit 1 diagnostics return-query-data -> ok (1.2 ms)"},
		{"2b 0e 01 00", "2b 0e 01 01 00 00 00", VerdictAllowed, 0, "", "14:03:04.120 alice plc-7 unit 1 read-device-identification -> ok (1.2 ms)"},
		{"18 0010", "18 0004 0001 0063", VerdictAllowed, 0, "", "14:03:04.120 alice plc-7 unit 1 read fifo holding 16 -> ok = 99 (1.2 ms)"},
		// What else changes the device's state says what it sent: file
		// records with their numbers and values, the data of diagnostics
		// sub-functions, MEI types and user-defined or vendor codes.
		{"15 0d 06 0004 0007 0003 06af 04be 100d", "15 0d 06 0004 0007 0003 06af 04be 100d", VerdictAllowed, 0, "",
			"14:03:04.120 alice plc-7 unit 1 write-file-record file 4 record 7 = 1711 1214 4109 -> ok (1.2 ms)"},
		{"15 14 06 0004 0007 0001 0001 06 0005 0000 0002 0002 0003", "15 14 06 0004 0007 0001 0001 06 0005 0000 0002 0002 0003", VerdictAllowed, 0, "",
			"14:03:04.120 alice plc-7 unit 1 write-file-record file 4 record 7 = 1; file 5 record 0 = 2 3 -> ok (1.2 ms)"},
		// What a file read asks for: file, record, records.
		{"14 07 06 0004 0001 0002", "14 06 05 06 0df8 0020", VerdictAllowed, 0, "",
			"14:03:04.120 alice plc-7 unit 1 read-file-record file 4 record 1 x2 -> ok (1.2 ms)"},
		{"14 0e 06 0004 0001 0002 06 0003 0009 0002", "14 0c 05 06 0df8 0020 05 06 0001 0002", VerdictAllowed, 0, "",
			"14:03:04.120 alice plc-7 unit 1 read-file-record file 4 record 1 x2; file 3 record 9 x2 -> ok (1.2 ms)"},
		{"08 0001 ff00", "08 0001 ff00", VerdictAllowed, 0, "", "14:03:04.120 alice plc-7 unit 1 diagnostics restart-communications data ff00 -> ok (1.2 ms)"},
		{"41 0102 03", "41 00", VerdictAllowed, 0, "", "14:03:04.120 alice plc-7 unit 1 user-defined-65 data 010203 -> ok (1.2 ms)"},
		{"5a 00 24 01", "5a 00 fe", VerdictAllowed, 0, "", "14:03:04.120 alice plc-7 unit 1 function-90 data 002401 -> ok (1.2 ms)"},
		{"2b 0d 00 01 02", "2b 0d 00", VerdictAllowed, 0, "", "14:03:04.120 alice plc-7 unit 1 canopen-general-reference data 000102 -> ok (1.2 ms)"},
	}
	for _, c := range cases {
		var rec Record
		rec.fillRequest(parse(c.req), at)
		rec.Verdict, rec.DenyException, rec.Reason = c.verdict, c.deny, c.reason
		rec.fillResponse(resp(c.resp), later)
		if got := string(rec.AppendText(nil, "alice", "plc-7")); got != c.want {
			t.Errorf("record of %s / %s:\n got %s\nwant %s", c.req, c.resp, got, c.want)
		}
	}
	long := Record{RequestTime: at, Unit: 1, Verdict: VerdictAllowed, Function: FuncReadHoldingRegisters, Table: TableHoldingRegisters, Count: 20,
		ReadValues: make([]byte, 40), ResponseTime: at.Add(50 * time.Microsecond)}
	if got, want := long.String(), "14:03:04.120 unit 1 read holding 0..19 -> ok = 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 ... (20 values) (0.050 ms)"; got != want {
		t.Errorf("long record:\n got %s\nwant %s", got, want)
	}
}
