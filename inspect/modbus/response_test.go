package modbus

import (
	"errors"
	"strings"
	"testing"
)

func TestParseResponseAndMatch(t *testing.T) {
	cases := []struct {
		name     string
		req      string // request PDU
		resp     string // response PDU
		parseErr string // Parse error substring
		matchErr string // Match error substring
		data     string // expected Data (hex) when valid; "-" to skip
	}{
		{"read coils", "01 0013 0013", "01 03 cd6b05", "", "", "cd6b05"},
		{"read coils wrong count", "01 0013 0013", "01 02 cd6b", "", "function 1 response: byte count 2 for quantity 19 (want 3)", ""},
		{"read coils bc mismatch", "01 0013 0013", "01 03 cd6b", "byte count 3 but 2 value bytes follow", "", ""},
		{"read coils no bc", "01 0013 0013", "01", "response has no byte count", "", ""},
		{"read discrete", "02 00c4 0016", "02 03 acdb35", "", "", "acdb35"},
		{"read holding", "03 006b 0003", "03 06 022b 0000 0064", "", "", "022b00000064"},
		{"read holding odd", "03 006b 0003", "03 05 022b 0000 00", "want an even number in 2..250", "", ""},
		{"read holding short", "03 006b 0003", "03 04 022b 0000", "", "byte count 4 for quantity 3 (want 6)", ""},
		{"read input", "04 0008 0001", "04 02 000a", "", "", "000a"},
		{"write coil", "05 00ac ff00", "05 00ac ff00", "", "", "ff00"},
		{"write coil bad value", "05 00ac ff00", "05 00ac 1234", "coil value 0x1234", "", ""},
		{"write coil wrong echo", "05 00ac ff00", "05 00ad ff00", "", "echo of address 173", ""},
		{"write register", "06 0001 0003", "06 0001 0003", "", "", "0003"},
		{"write register wrong echo", "06 0001 0003", "06 0001 0004", "", "echo of address 1 value 00 04 differs", ""},
		{"write register short", "06 0001 0003", "06 0001", "response is 2 data bytes, want 4", "", ""},
		{"read exception status", "07", "07 6d", "", "", "-"},
		{"read exception status long", "07", "07 6d 00", "want 1 (output data)", "", ""},
		{"diag echo", "08 0000 a537", "08 0000 a537", "", "", "a537"},
		{"diag echo differs", "08 0000 a537", "08 0000 a538", "", "does not echo request data", ""},
		{"diag counter", "08 000b 0000", "08 000b 0108", "", "", "0108"},
		{"diag wrong sub", "08 000b 0000", "08 000c 0108", "", "sub-function 0x0c answers sub-function 0x0b", ""},
		{"diag counter long", "08 000b 0000", "08 000b 010800", "sub-function 0x0b: data is 3 bytes, want 2", "", ""},
		{"comm event counter", "0b", "0b ffff 0108", "", "", "-"},
		{"comm event counter short", "0b", "0b ffff", "want 4 (status, event count)", "", ""},
		{"comm event log", "0c", "0c 08 0000 0108 0121 2000", "", "", "-"},
		{"comm event log bc", "0c", "0c 05 0000 0108 01", "byte count 5 with 5 bytes following, want 6..70", "", ""},
		{"write coils", "0f 0013 000a 02 cd01", "0f 0013 000a", "", "", "-"},
		{"write coils wrong echo", "0f 0013 000a 02 cd01", "0f 0013 0009", "", "echo of address 19 quantity 9", ""},
		{"write registers", "10 0001 0002 04 000a 0102", "10 0001 0002", "", "", "-"},
		{"report server id", "11", "11 03 4142ff", "", "", "4142ff"},
		{"report server id bc", "11", "11 04 4142ff", "byte count 4 with 3 bytes following", "", ""},
		{"read file record", "14 0e 06 0004 0001 0002 06 0003 0009 0002", "14 0c 05 06 0df8 0020 05 06 33cd 0040", "", "", "-"},
		{"read file record count", "14 0e 06 0004 0001 0002 06 0003 0009 0002", "14 06 05 06 0df8 0020", "", "1 sub-responses for 2 sub-requests", ""},
		{"read file record size", "14 07 06 0004 0001 0002", "14 04 03 06 0df8", "", "sub-response 0 has 1 registers, request asked 2", ""},
		{"read file record even", "14 07 06 0004 0001 0002", "14 05 04 06 0df8 00", "sub-response 0: length 4, want odd", "", ""},
		{"read file record ref", "14 07 06 0004 0001 0001", "14 04 03 07 0df8", "sub-response 0: reference type 7", "", ""},
		{"write file record", "15 0d 06 0004 0007 0003 06af 04be 100d", "15 0d 06 0004 0007 0003 06af 04be 100d", "", "", "-"},
		{"write file record no echo", "15 0d 06 0004 0007 0003 06af 04be 100d", "15 0d 06 0004 0007 0003 06af 04be 100e", "", "does not echo the request", ""},
		{"mask write", "16 0004 00f2 0025", "16 0004 00f2 0025", "", "", "00f20025"},
		{"mask write differs", "16 0004 00f2 0025", "16 0004 00f2 0026", "", "differs from request", ""},
		{"read write multiple", "17 0003 0006 000e 0003 06 00ff 00ff 00ff", "17 0c 00fe 0acd 0001 0003 000d 00ff", "", "", "00fe0acd00010003000d00ff"},
		{"read write multiple count", "17 0003 0006 000e 0003 06 00ff 00ff 00ff", "17 02 00fe", "", "byte count 2 for quantity 6 (want 12)", ""},
		{"read fifo", "18 04de", "18 0006 0002 01b8 1284", "", "", "01b81284"},
		{"read fifo bc", "18 04de", "18 0008 0002 01b8 1284", "byte count 8, FIFO count 2", "", ""},
		{"read fifo 32", "18 04de", "18 0042 0020 " + strings.Repeat("0000", 32), "FIFO count 32 over 31", "", ""},
		{"device id", "2b 0e 01 00", "2b 0e 01 01 00 00 03 00 03 414243 01 02 4142 02 01 41", "", "", "-"},
		{"device id objects", "2b 0e 01 00", "2b 0e 01 01 00 00 03 00 03 414243 01 02 4142", "MEI 14: object 2 of 3 truncated", "", ""},
		{"device id trailing", "2b 0e 01 00", "2b 0e 01 01 00 00 01 00 01 41 99", "MEI 14: 1 bytes after 1 objects", "", ""},
		{"device id conformity", "2b 0e 01 00", "2b 0e 01 04 00 00 00", "conformity level 0x04", "", ""},
		{"device id code mismatch", "2b 0e 01 00", "2b 0e 02 01 00 00 00", "", "read device id code 2 answers code 1", ""},
		{"device id more follows", "2b 0e 01 00", "2b 0e 01 01 01 00 00", "more follows 0x01", "", ""},
		{"canopen", "2b 0d 0102", "2b 0d 0304", "", "", "0304"},
		{"wrong mei", "2b 0d 0102", "2b 0e 01 01 00 00 00", "", "MEI type 14 answers MEI type 13", ""},
		{"user defined", "41 0102", "41 99", "", "", "99"},
		{"exception", "03 006b 0003", "83 02", "", "", "-"},
		{"exception long", "03 006b 0003", "83 02 00", "exception response has 2 data bytes, want 1", "", ""},
		{"exception code 0", "03 006b 0003", "83 00", "exception code 0", "", ""},
		{"exception to function 0", "03 006b 0003", "80 01", "exception response to function 0", "", ""},
		{"wrong function", "03 006b 0003", "04 02 0000", "", "function 4 answers function 3", ""},
		{"function 0", "03 006b 0003", "00", "function code 0 is invalid", "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var req Request
			if err := req.Parse(adu(9, 1, pdu(t, c.req))); err != nil {
				t.Fatalf("request %s: %v", c.req, err)
			}
			var resp Response
			err := resp.Parse(adu(9, 1, pdu(t, c.resp)))
			if c.parseErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.parseErr) || !errors.Is(err, ErrMalformed) {
					t.Fatalf("Parse(%s) = %v, want error containing %q", c.resp, err, c.parseErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%s): %v", c.resp, err)
			}
			err = resp.Match(&req)
			if c.matchErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.matchErr) || !errors.Is(err, ErrMismatch) {
					t.Fatalf("Match = %v, want error containing %q", err, c.matchErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Match: %v", err)
			}
			if c.data != "-" && hexOf(resp.Data) != c.data {
				t.Errorf("data %s, want %s", hexOf(resp.Data), c.data)
			}
		})
	}
}

func TestResponseUnitMismatch(t *testing.T) {
	var req Request
	var resp Response
	if err := req.Parse(adu(1, 1, pdu(t, "03 0000 0001"))); err != nil {
		t.Fatal(err)
	}
	if err := resp.Parse(adu(1, 2, pdu(t, "03 02 0000"))); err != nil {
		t.Fatal(err)
	}
	if err := resp.Match(&req); err == nil || !strings.Contains(err.Error(), "unit 2 answers a request to unit 1") {
		t.Fatalf("Match = %v", err)
	}
	if err := resp.Parse(adu(1, 1, pdu(t, "83 02"))); err != nil || resp.Exception != ExIllegalDataAddress || resp.Function != 3 {
		t.Fatalf("exception parse: %v %+v", err, resp)
	}
	if err := resp.Match(&req); err != nil {
		t.Fatalf("exception matches its request: %v", err)
	}
}
