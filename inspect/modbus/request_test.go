package modbus

import (
	"errors"
	"strings"
	"testing"
)

func TestParseRequest(t *testing.T) {
	type want struct {
		table      Table
		addr, cnt  uint16
		waddr, wc  uint16
		sub        uint16
		knownSub   bool
		data       string
		dataLenNot bool
	}
	cases := []struct {
		name string
		pdu  string
		err  string // substring of the error; "" = valid
		want *want
	}{
		// 1-4 reads
		{"read coils", "01 0013 0013", "", &want{table: TableCoils, addr: 19, cnt: 19, knownSub: true}},
		{"read coils max", "01 0000 07d0", "", &want{table: TableCoils, cnt: 2000, knownSub: true}},
		{"read coils 0", "01 0000 0000", "function 1: quantity 0 out of range 1..2000", nil},
		{"read coils 2001", "01 0000 07d1", "quantity 2001 out of range 1..2000", nil},
		{"read coils past end", "01 ffff 0002", "address 65535 + quantity 2 passes the end", nil},
		{"read coils last", "01 ffff 0001", "", &want{table: TableCoils, addr: 65535, cnt: 1, knownSub: true}},
		{"read coils short", "01 0013", "function 1: request is 2 data bytes, want 4", nil},
		{"read discrete", "02 00c4 0016", "", &want{table: TableDiscreteInputs, addr: 196, cnt: 22, knownSub: true}},
		{"read discrete 2001", "02 0000 07d1", "out of range 1..2000", nil},
		{"read holding", "03 006b 0003", "", &want{table: TableHoldingRegisters, addr: 107, cnt: 3, knownSub: true}},
		{"read holding 125", "03 0000 007d", "", &want{table: TableHoldingRegisters, cnt: 125, knownSub: true}},
		{"read holding 126", "03 0000 007e", "function 3: quantity 126 out of range 1..125", nil},
		{"read holding long", "03 0000 0001 00", "request is 5 data bytes", nil},
		{"read input", "04 0008 0001", "", &want{table: TableInputRegisters, addr: 8, cnt: 1, knownSub: true}},
		{"read input 0", "04 0008 0000", "quantity 0", nil},
		// 5, 6
		{"write coil on", "05 00ac ff00", "", &want{table: TableCoils, addr: 172, cnt: 1, data: "ff00", knownSub: true}},
		{"write coil off", "05 00ac 0000", "", &want{table: TableCoils, addr: 172, cnt: 1, data: "0000", knownSub: true}},
		{"write coil bad value", "05 00ac 0001", "function 5: coil value 0x0001, want 0x0000 (off) or 0xff00 (on)", nil},
		{"write coil short", "05 00ac ff", "request is 3 data bytes", nil},
		{"write register", "06 0001 0003", "", &want{table: TableHoldingRegisters, addr: 1, cnt: 1, data: "0003", knownSub: true}},
		{"write register long", "06 0001 0003 00", "request is 5 data bytes", nil},
		// 7, 11, 12, 17
		{"read exception status", "07", "", &want{knownSub: true}},
		{"read exception status data", "07 00", "function 7: request has 1 data bytes, want none", nil},
		{"comm event counter", "0b", "", &want{knownSub: true}},
		{"comm event counter data", "0b 0000", "function 11: request has 2 data bytes", nil},
		{"comm event log", "0c", "", &want{knownSub: true}},
		{"comm event log data", "0c 01", "function 12:", nil},
		{"report server id", "11", "", &want{knownSub: true}},
		{"report server id data", "11 01", "function 17:", nil},
		// 8
		{"diag query data", "08 0000 a537", "", &want{sub: 0, data: "a537", knownSub: true}},
		{"diag query data empty", "08 0000", "", &want{sub: 0, knownSub: true, dataLenNot: true}},
		{"diag restart", "08 0001 ff00", "", &want{sub: 1, data: "ff00", knownSub: true}},
		{"diag restart bad", "08 0001 00ff", "sub-function 0x01: data 0x00ff, want 0x0000 or 0xff00", nil},
		{"diag register", "08 0002 0000", "", &want{sub: 2, data: "0000", knownSub: true}},
		{"diag register bad", "08 0002 0001", "sub-function 0x02: data 0x0001, want 0x0000", nil},
		{"diag register short", "08 0002 00", "sub-function 0x02: data is 1 bytes, want 2", nil},
		{"diag ascii delimiter", "08 0003 0a00", "", &want{sub: 3, data: "0a00", knownSub: true}},
		{"diag ascii delimiter bad", "08 0003 0a01", "second data byte 0x01", nil},
		{"diag listen only", "08 0004 0000", "", &want{sub: 4, data: "0000", knownSub: true}},
		{"diag clear counters", "08 000a 0000", "", &want{sub: 10, data: "0000", knownSub: true}},
		{"diag bus message count", "08 000b 0000", "", &want{sub: 11, data: "0000", knownSub: true}},
		{"diag char overrun", "08 0012 0000", "", &want{sub: 18, data: "0000", knownSub: true}},
		{"diag clear overrun", "08 0014 0000", "", &want{sub: 20, data: "0000", knownSub: true}},
		{"diag unknown sub", "08 0013 1234", "", &want{sub: 19, data: "1234", knownSub: false}},
		{"diag no sub", "08 00", "function 8: request is 1 data bytes", nil},
		// 15, 16
		{"write coils", "0f 0013 000a 02 cd01", "", &want{table: TableCoils, addr: 19, cnt: 10, data: "cd01", knownSub: true}},
		{"write coils 1968", "0f 0000 07b0 f6 " + strings.Repeat("00", 246), "", &want{table: TableCoils, cnt: 1968, knownSub: true, dataLenNot: true}},
		{"write coils 1969", "0f 0000 07b1 f7 " + strings.Repeat("00", 247), "quantity 1969 out of range 1..1968", nil},
		{"write coils bad count", "0f 0013 000a 01 cd", "function 15: byte count 1 does not match quantity 10 (want 2)", nil},
		{"write coils short values", "0f 0013 000a 02 cd", "byte count 2 but 1 value bytes follow", nil},
		{"write registers", "10 0001 0002 04 000a 0102", "", &want{table: TableHoldingRegisters, addr: 1, cnt: 2, data: "000a0102", knownSub: true}},
		{"write registers bad count", "10 0001 0004 07 " + strings.Repeat("00", 7), "function 16: byte count 7 does not match quantity 4 (want 8)", nil},
		{"write registers 124", "10 0000 007c 02 0000", "quantity 124 out of range 1..123", nil},
		{"write registers past end", "10 ffff 0002 04 00000000", "passes the end", nil},
		{"write registers extra", "10 0001 0001 02 0001 00", "byte count 2 but 3 value bytes follow", nil},
		{"write registers header only", "10 0001 00", "want at least 5", nil},
		// 20, 21
		{"read file record", "14 0e 06 0004 0001 0002 06 0003 0009 0002", "", &want{table: TableFileRecords, cnt: 2, knownSub: true, dataLenNot: true}},
		{"read file record bad type", "14 07 05 0004 0001 0002", "sub-request 0: reference type 5, want 6", nil},
		{"read file record file 0", "14 07 06 0000 0001 0002", "file number 0", nil},
		{"read file record record 10000", "14 07 06 0001 2710 0001", "record number 10000 out of range 0..9999", nil},
		{"read file record length 0", "14 07 06 0001 0001 0000", "record length 0", nil},
		{"read file record byte count", "14 08 06 0001 0001 0001 00", "byte count 8, want a multiple of 7", nil},
		{"read file record mismatch", "14 0e 06 0001 0001 0001", "byte count 14 but 7 bytes follow", nil},
		{"read file record too big", "14 07 06 0001 0000 0080", "need a 260-byte response, over the PDU limit 253", nil},
		{"write file record", "15 0d 06 0004 0007 0003 06af 04be 100d", "", &want{table: TableFileRecords, cnt: 1, knownSub: true, dataLenNot: true}},
		{"write file record short data", "15 0b 06 0004 0007 0003 06af 04be", "record length 3 needs 6 data bytes, 4 left", nil},
		{"write file record small", "15 07 06 0004 0007 0003", "byte count 7 out of range 9..251", nil},
		{"write file record trailing", "15 0c 06 0004 0007 0001 06af 0102 03", "sub-request 1: 3 bytes left", nil},
		// 22, 23, 24
		{"mask write", "16 0004 00f2 0025", "", &want{table: TableHoldingRegisters, addr: 4, cnt: 1, data: "00f20025", knownSub: true}},
		{"mask write short", "16 0004 00f2", "function 22: request is 4 data bytes, want 6", nil},
		{"read write multiple", "17 0003 0006 000e 0003 06 00ff 00ff 00ff", "", &want{table: TableHoldingRegisters, addr: 3, cnt: 6, waddr: 14, wc: 3, data: "00ff00ff00ff", knownSub: true}},
		{"read write read 126", "17 0003 007e 000e 0001 02 00ff", "function 23: read quantity 126 out of range 1..125", nil},
		{"read write write 122", "17 0003 0001 000e 007a 02 0000", "write quantity 122 out of range 1..121", nil},
		{"read write bad count", "17 0003 0001 000e 0002 02 00ff", "byte count 2 does not match write quantity 2 (want 4)", nil},
		{"read write past end", "17 fffe 0003 000e 0001 02 00ff", "read address 65534 + quantity 3 passes the end", nil},
		{"read fifo", "18 04de", "", &want{table: TableHoldingRegisters, addr: 1246, knownSub: true}},
		{"read fifo long", "18 04de 00", "function 24: request is 3 data bytes, want 2", nil},
		// 43
		{"read device id", "2b 0e 01 00", "", &want{sub: 14, data: "0100", knownSub: true}},
		{"read device id code 5", "2b 0e 05 00", "MEI 14: read device id code 5 out of range 1..4", nil},
		{"read device id short", "2b 0e 01", "MEI 14: request is 2 data bytes, want 3", nil},
		{"canopen", "2b 0d 0102030405", "", &want{sub: 13, data: "0102030405", knownSub: true}},
		{"mei unknown", "2b 07 00", "", &want{sub: 7, data: "00", knownSub: false}},
		{"mei missing", "2b", "function 43: request has no MEI type", nil},
		// user-defined, reserved, invalid
		{"user defined 65", "41 0102", "", &want{data: "0102", knownSub: true}},
		{"user defined 110", "6e", "", &want{knownSub: true, dataLenNot: true}},
		{"reserved 90", "5a 00 02", "", &want{data: "0002", knownSub: true}},
		{"function 0", "00 0000", "function 0: function code 0 is not a request function", nil},
		{"function 0x83", "83 02", "function 131: function code 131 is not a request function", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			frame := adu(0x1234, 7, pdu(t, c.pdu))
			var r Request
			err := r.Parse(frame)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("Parse(%s) = %v, want error containing %q", c.pdu, err, c.err)
				}
				var fe *FieldError
				switch {
				case errors.Is(err, ErrIllegalRequest):
					if !errors.As(err, &fe) || (fe.Exception != ExIllegalDataAddress && fe.Exception != ExIllegalDataValue) {
						t.Fatalf("illegal request %v without exception 02 or 03", err)
					}
				case !errors.Is(err, ErrMalformed):
					t.Fatalf("error %v wraps neither ErrMalformed nor ErrIllegalRequest", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%s): %v", c.pdu, err)
			}
			w := c.want
			if r.Header.TransactionID != 0x1234 || r.Header.Unit != 7 || r.Function != Function(frame[7]) {
				t.Errorf("header/function = %+v %d", r.Header, r.Function)
			}
			if r.Table != w.table || r.Address != w.addr || r.Count != w.cnt || r.WriteAddress != w.waddr || r.WriteCount != w.wc {
				t.Errorf("got table %v span %d+%d write %d+%d, want %v %d+%d %d+%d",
					r.Table, r.Address, r.Count, r.WriteAddress, r.WriteCount, w.table, w.addr, w.cnt, w.waddr, w.wc)
			}
			if r.SubFunction != w.sub || r.KnownSubFunction != w.knownSub {
				t.Errorf("sub-function %d known %t, want %d %t", r.SubFunction, r.KnownSubFunction, w.sub, w.knownSub)
			}
			if !w.dataLenNot {
				if got := hexOf(r.Data); got != w.data {
					t.Errorf("data %s, want %s", got, w.data)
				}
			}
		})
	}
}

func hexOf(b []byte) string {
	const h = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, x := range b {
		out = append(out, h[x>>4], h[x&15])
	}
	return string(out)
}

func TestParseHeaderLimits(t *testing.T) {
	cases := []struct {
		name  string
		frame []byte
		err   string
		is    error
	}{
		{"protocol 1", []byte{0, 1, 0, 1, 0, 6, 1, 3, 0, 0, 0, 1}, "protocol id 1, want 0", ErrMalformed},
		{"length 255", []byte{0, 1, 0, 0, 0, 255, 1}, "length 255 over 254 (ADU limit 260 bytes)", ErrOversized},
		{"length 1", []byte{0, 1, 0, 0, 0, 1, 1}, "length 1 under 2", ErrMalformed},
		{"short", []byte{0, 1, 0, 0, 0}, "5 bytes, want 7", ErrMalformed},
		{"frame shorter than length", []byte{0, 1, 0, 0, 0, 6, 1, 3, 0, 0}, "announces a 12-byte frame, got 10 bytes", ErrMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var r Request
			err := r.Parse(c.frame)
			if err == nil || !strings.Contains(err.Error(), c.err) || !errors.Is(err, c.is) {
				t.Fatalf("Parse = %v, want %q wrapping %v", err, c.err, c.is)
			}
		})
	}
	// The largest legal frame: 260 bytes, length 254.
	big := adu(1, 1, cat([]byte{0x41}, make([]byte, 252)))
	if len(big) != MaxADU {
		t.Fatalf("test frame is %d bytes, want %d", len(big), MaxADU)
	}
	var r Request
	if err := r.Parse(big); err != nil {
		t.Fatalf("260-byte frame: %v", err)
	}
}

// TestIllegalRequests: a request framed correctly whose values the
// specification forbids is an ErrIllegalRequest with the exception its
// state diagrams give (02 for addresses, 03 for quantities, byte counts
// and values); a frame whose own layout is broken (a byte count the
// bytes do not follow, a PDU of the wrong length) stays ErrMalformed,
// even when a value is also out of range.
func TestIllegalRequests(t *testing.T) {
	cases := []struct {
		name string
		pdu  string
		exc  ExceptionCode // 0: ErrMalformed
	}{
		{"read 126 registers", "03 0000 007e", ExIllegalDataValue},
		{"read 0 coils", "01 0000 0000", ExIllegalDataValue},
		{"read past the address space", "03 ffff 0002", ExIllegalDataAddress},
		{"coil value", "05 0001 0001", ExIllegalDataValue},
		{"write 124 registers, bytes agreeing", "10 0000 007c 02 0000", ExIllegalDataValue},
		{"byte count not the quantity's, bytes agreeing", "10 0000 0002 02 0000", ExIllegalDataValue},
		{"byte count the bytes do not follow", "10 0000 0002 04 0000", 0},
		{"quantity out of range and byte count the bytes do not follow", "10 0000 007c 04 0000", 0},
		{"read/write: write quantity 122", "17 0000 0001 0000 007a 02 0000", ExIllegalDataValue},
		{"read/write: byte count the bytes do not follow", "17 0000 0001 0000 0001 02 00", 0},
		{"read file record: reference type", "14 07 05 0001 0000 0001", ExIllegalDataAddress},
		{"read file record: byte count not a multiple of 7, bytes agreeing", "14 08 06 0001 0000 0001 00", ExIllegalDataValue},
		{"read device id code 5", "2b 0e 05 00", ExIllegalDataValue},
		{"diagnostics 0x0a with data 1", "08 000a 0001", ExIllegalDataValue},
		{"diagnostics 0x0a with 3 data bytes", "08 000a 0000 00", 0},
		{"read registers, 6 data bytes", "03 0000 0001 0000", 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var r Request
			err := r.Parse(adu(9, 1, pdu(t, c.pdu)))
			var fe *FieldError
			if c.exc == 0 {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("Parse(%s) = %v, want ErrMalformed", c.pdu, err)
				}
				return
			}
			if !errors.Is(err, ErrIllegalRequest) || !errors.As(err, &fe) || fe.Exception != c.exc {
				t.Fatalf("Parse(%s) = %v, want ErrIllegalRequest with exception %v", c.pdu, err, c.exc)
			}
			if r.Header.TransactionID != 9 || r.Function != Function(pdu(t, c.pdu)[0]) {
				t.Fatalf("header %+v, function %v: the exception needs both", r.Header, r.Function)
			}
		})
	}
}
