package modbus_test

import (
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/otgate/otgate/inspect/modbus"
)

// tsharkFields are the Modbus dissector fields compared with the records.
var tsharkFields = []string{
	"tcp.srcport", "mbtcp.trans_id", "mbtcp.unit_id", "modbus.func_code", "modbus.exception_code",
	"modbus.reference_num", "modbus.word_cnt", "modbus.bit_cnt", "modbus.regval_uint16",
	"modbus.read_reference_num", "modbus.read_word_cnt", "modbus.write_reference_num", "modbus.write_word_cnt",
	"modbus.and_mask", "modbus.or_mask", "modbus.diagnostic_code", "modbus.bitval",
}

// TestRecordsMatchTshark relays traffic through the inspector, writes what
// crossed the client side as a pcap, and checks that Wireshark's Modbus
// dissector decodes every transaction as the records do.
func TestRecordsMatchTshark(t *testing.T) {
	if _, err := exec.LookPath("tshark"); err != nil {
		t.Skip("tshark not installed (apt-get install tshark)")
	}
	var mu sync.Mutex
	var segs []segment
	tap := func(c net.Conn) net.Conn { return tapConn{c, &mu, &segs} }
	g := startGateWith(t, startPlant(t), modbus.Enforce, gateOptions{wrap: tap})
	c := dial(t, g.addr)
	requests := [][]byte{
		frame(1, 1, 3, 0, 0, 0, 4),
		frame(2, 1, 6, 0, 52, 0, 55),
		frame(3, 1, 6, 0, 60, 0, 1), // denied: outside the write ranges
		frame(4, 1, 16, 0, 50, 0, 2, 4, 0, 7, 0, 8),
		frame(5, 1, 1, 0, 0, 0, 3),
		frame(6, 1, 5, 0, 0, 0xff, 0),
		frame(7, 1, 23, 0, 50, 0, 2, 0, 53, 0, 1, 2, 0, 9),
		frame(8, 1, 22, 0, 51, 0, 0xf2, 0, 0x25),
		frame(9, 1, 8, 0, 0, 0x12, 0x34),
		frame(10, 1, 4, 0, 0, 0, 3),
		frame(11, 1, 2, 0, 0, 0, 3),
		frame(12, 1, 3, 0, 98, 0, 3),           // denied: span 98..100 passes the read range 0-99
		frame(13, 1, 3, 0, 90, 0, 10),          // allowed read up to 99
		frame(14, 1, 16, 0, 52, 0, 1, 2, 1, 0), // denied: 256 over the limit
		frame(15, 1, 15, 0, 0, 0, 2, 1, 3),
	}
	for _, f := range requests {
		if _, err := c.Write(f); err != nil {
			t.Fatal(err)
		}
		readFrame(t, c)
	}
	c.Close()
	if err := g.end(t); err != nil {
		t.Fatalf("session end: %v", err)
	}
	recs := g.rec.wait(t, len(requests))
	pcap := filepath.Join(t.TempDir(), "gate-client-side.pcap")
	mu.Lock()
	err := writePcap(pcap, segs)
	mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"-r", pcap, "-Y", "mbtcp", "-T", "fields", "-E", "separator=|", "-E", "occurrence=a", "-E", "aggregator=,"}
	for _, f := range tsharkFields {
		args = append(args, "-e", f)
	}
	out, err := exec.Command("tshark", args...).Output()
	if err != nil {
		t.Fatalf("tshark: %v", err)
	}
	// dissected[direction][transaction id] = field -> value
	dissected := [2]map[string]map[string]string{{}, {}}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		vals := strings.Split(line, "|")
		if len(vals) != len(tsharkFields) {
			t.Fatalf("tshark line %q has %d fields, want %d", line, len(vals), len(tsharkFields))
		}
		m := map[string]string{}
		for i, f := range tsharkFields {
			m[f] = vals[i]
		}
		dir := 0
		if m["tcp.srcport"] == "502" {
			dir = 1
		}
		dissected[dir][m["mbtcp.trans_id"]] = m
	}
	// The records made before forwarding a write decode the request as
	// tshark does too; there is one for each allowed write and none for a
	// read or a denied write.
	var forwarded []string
	all := g.rec.everything()
	for _, rec := range all {
		if rec.Outcome == modbus.OutcomeForwarded {
			forwarded = append(forwarded, strconv.Itoa(int(rec.TransactionID)))
		}
	}
	if got := strings.Join(forwarded, " "); got != "2 4 6 7 8 15" {
		t.Errorf("records before forwarding for transactions %q, want the allowed writes 2 4 6 7 8 15", got)
	}
	if len(all) != len(recs)+len(forwarded) {
		t.Errorf("%d records, want %d", len(all), len(recs)+len(forwarded))
	}
	for _, rec := range all {
		tid := strconv.Itoa(int(rec.TransactionID))
		wantReq, wantResp := expectedFields(rec)
		for dir, want := range []map[string]string{wantReq, wantResp} {
			got := dissected[dir][tid]
			if got == nil {
				t.Errorf("tshark shows no %s for transaction %s (%s)", []string{"request", "response"}[dir], tid, rec)
				continue
			}
			for f, w := range want {
				if got[f] != w {
					t.Errorf("transaction %s %s: tshark %s = %q, record says %q (%s)", tid, []string{"request", "response"}[dir], f, got[f], w, rec)
				}
			}
		}
	}
	if t.Failed() {
		t.Logf("tshark:\n%s\nrecords:\n%s", out, g.rec.text())
	}
}

// expectedFields derives from a record what tshark must show in the
// request and the response.
func expectedFields(r *modbus.Record) (req, resp map[string]string) {
	u := func(v int) string { return strconv.Itoa(v) }
	words := func(b []byte) string {
		s := make([]string, len(b)/2)
		for i := range s {
			s[i] = u(int(b[2*i])<<8 | int(b[2*i+1]))
		}
		return strings.Join(s, ",")
	}
	bits := func(b []byte, n int) string {
		s := make([]string, n)
		for i := range s {
			s[i] = u(int(b[i/8] >> (i % 8) & 1))
		}
		return strings.Join(s, ",")
	}
	hex16 := func(b []byte) string { return "0x" + strconv.FormatUint(uint64(b[0])<<8|uint64(b[1])|1<<16, 16)[1:] }
	common := map[string]string{"mbtcp.unit_id": u(int(r.Unit)), "modbus.func_code": u(int(r.Function))}
	req, resp = map[string]string{}, map[string]string{}
	for k, v := range common {
		req[k], resp[k] = v, v
	}
	if r.Outcome == modbus.OutcomeException {
		resp["modbus.exception_code"] = u(int(r.Exception))
	}
	ok := r.Outcome == modbus.OutcomeOK
	switch r.Function {
	case modbus.FuncReadHoldingRegisters, modbus.FuncReadInputRegisters:
		req["modbus.reference_num"], req["modbus.word_cnt"] = u(int(r.Address)), u(int(r.Count))
		if ok {
			resp["modbus.regval_uint16"] = words(r.ReadValues)
		}
	case modbus.FuncReadCoils, modbus.FuncReadDiscreteInputs:
		req["modbus.reference_num"], req["modbus.bit_cnt"] = u(int(r.Address)), u(int(r.Count))
		if ok {
			resp["modbus.bitval"] = bits(r.ReadValues, int(r.Count))
		}
	case modbus.FuncWriteSingleRegister, modbus.FuncWriteSingleCoil:
		req["modbus.reference_num"] = u(int(r.Address))
		if ok {
			resp["modbus.reference_num"] = u(int(r.Address))
		}
	case modbus.FuncWriteMultipleRegisters:
		req["modbus.reference_num"], req["modbus.word_cnt"] = u(int(r.Address)), u(int(r.Count))
		req["modbus.regval_uint16"] = words(r.Written)
		if ok {
			resp["modbus.reference_num"], resp["modbus.word_cnt"] = u(int(r.Address)), u(int(r.Count))
		}
	case modbus.FuncWriteMultipleCoils:
		req["modbus.reference_num"], req["modbus.bit_cnt"] = u(int(r.Address)), u(int(r.Count))
		if ok { // tshark does not list the written bits of a request
			resp["modbus.reference_num"], resp["modbus.bit_cnt"] = u(int(r.Address)), u(int(r.Count))
		}
	case modbus.FuncReadWriteMultipleRegisters:
		req["modbus.read_reference_num"], req["modbus.read_word_cnt"] = u(int(r.Address)), u(int(r.Count))
		req["modbus.write_reference_num"], req["modbus.write_word_cnt"] = u(int(r.WriteAddress)), u(int(r.WriteCount))
	case modbus.FuncMaskWriteRegister:
		req["modbus.reference_num"] = u(int(r.Address))
		req["modbus.and_mask"], req["modbus.or_mask"] = hex16(r.Written), hex16(r.Written[2:])
	case modbus.FuncDiagnostics:
		req["modbus.diagnostic_code"] = u(int(r.SubFunction))
	}
	return req, resp
}
