package modbus_test

import (
	"encoding/json"
	"net"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/otgate/otgate/inspect/modbus"
	"github.com/otgate/otgate/plant/pymodbustest"
)

// pyResult is one operation's result printed by plant/testdata/modbus_client.py.
type pyResult struct {
	OK        bool   `json:"ok"`
	Values    []int  `json:"values"`
	Exception int    `json:"exception"`
	Error     string `json:"error"`
	TID       int    `json:"tid"`
}

func runPymodbus(t *testing.T, addr string, unit int, ops string) []pyResult {
	t.Helper()
	if err := exec.Command("/usr/bin/python3", "-c", "import pymodbus.client").Run(); err != nil {
		t.Skip("python3-pymodbus not installed (apt-get install python3-pymodbus)")
	}
	host, port, _ := net.SplitHostPort(addr)
	out, err := exec.Command("/usr/bin/python3", "../../plant/testdata/modbus_client.py", host, port, strconv.Itoa(unit), ops).CombinedOutput()
	if err != nil {
		t.Fatalf("pymodbus client: %v\n%s", err, out)
	}
	var res []pyResult
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("pymodbus output %q: %v", out, err)
	}
	return res
}

func TestThroughGateWithPymodbus(t *testing.T) {
	g := startGate(t, startPlant(t), modbus.Enforce)
	res := runPymodbus(t, g.addr, 1, `[
		["rh",0,4], ["wr",52,55], ["wr",60,1], ["rh",52,1], ["wr",52,101],
		["wc",0,true], ["wc",5,true], ["ri",0,3], ["rd",0,3], ["wm",50,[1,2,3]],
		["wm",54,[1,2,3]], ["rh",100,1]]`)
	type want struct {
		ok     bool
		exc    int
		values string
	}
	wants := []want{
		{true, 0, "[20 800 200 950]"}, {true, 0, "[]"}, {false, 2, "[]"}, {true, 0, "[55]"}, {false, 3, "[]"},
		{true, 0, "[]"}, {false, 2, "[]"}, {true, 0, ""}, {true, 0, "[0 0 1]"}, {true, 0, "[]"},
		{false, 2, "[]"}, {false, 2, "[]"},
	}
	if len(res) != len(wants) {
		t.Fatalf("%d results, want %d: %+v", len(res), len(wants), res)
	}
	for i, w := range wants {
		r := res[i]
		if r.Values == nil {
			r.Values = []int{}
		}
		if r.OK != w.ok || r.Exception != w.exc || r.Error != "" || (w.values != "" && sprint(r.Values) != w.values) {
			t.Errorf("op %d: %+v, want %+v", i, r, w)
		}
	}
	// The transcript names the same transaction ids pymodbus used.
	recs := g.rec.wait(t, len(wants))
	byTID := map[int]*modbus.Record{}
	for _, r := range recs {
		byTID[int(r.TransactionID)] = r
	}
	for i, r := range res {
		rec := byTID[r.TID]
		if rec == nil {
			t.Fatalf("no record for pymodbus transaction %d (op %d)", r.TID, i)
		}
		if r.Exception != 0 && (rec.Outcome != modbus.OutcomeException || int(rec.Exception) != r.Exception) {
			t.Errorf("op %d: client saw exception %d, record %s", i, r.Exception, rec)
		}
		if r.OK && rec.Outcome != modbus.OutcomeOK {
			t.Errorf("op %d: client saw ok, record %s", i, rec)
		}
	}
	text := g.rec.text()
	for _, want := range []string{
		"unit 1 write holding 52 = 55 -> ok (",
		`unit 1 write holding 60 = 1 -> denied, exception 02 illegal data address: modbus rules "alice-plc7": write holding 60 outside write ranges 50-55`,
		"write holding 52 = 101 -> denied, exception 03 illegal data value",
		`write coil 5 = on -> denied, exception 02 illegal data address`,
		"write holding 54..56 = 1 2 3 -> denied, exception 02",
		"read holding 100 -> denied, exception 02",
		"read discrete 0..2 -> ok = 0 0 1 (",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("transcript lacks %q:\n%s", want, text)
		}
	}
	// A unit the grant does not cover: the gate answers 0A itself.
	if r := runPymodbus(t, g.addr, 2, `[["rh",0,1]]`); r[0].Exception != 0x0A {
		t.Errorf("unit 2: %+v, want exception 0A gateway path unavailable", r[0])
	}
}

func sprint(v []int) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.Itoa(x)
	}
	return "[" + strings.Join(s, " ") + "]"
}

var mbpollValue = regexp.MustCompile(`(?m)^\[(\d+)\]:\s+(-?\d+)`)

// mbpoll runs mbpoll against addr (unit 1, 0-based references) with the
// given table options, then write values if any.
func mbpoll(t *testing.T, addr string, opts []string, values ...string) (vals []int, out string, err error) {
	t.Helper()
	path, lerr := exec.LookPath("mbpoll")
	if lerr != nil {
		t.Skip("mbpoll not installed (apt-get install mbpoll)")
	}
	host, port, _ := net.SplitHostPort(addr)
	args := append([]string{"-m", "tcp", "-p", port, "-a", "1", "-0", "-1", "-o", "10"}, opts...)
	args = append(append(args, host), values...)
	b, err := exec.Command(path, args...).CombinedOutput()
	for _, m := range mbpollValue.FindAllStringSubmatch(string(b), -1) {
		v, _ := strconv.Atoi(m[2])
		vals = append(vals, v)
	}
	return vals, string(b), err
}

func TestThroughGateWithMbpoll(t *testing.T) {
	g := startGate(t, startPlant(t), modbus.Enforce)
	if v, out, err := mbpoll(t, g.addr, []string{"-t", "4", "-r", "0", "-c", "4"}); err != nil || sprint(v) != "[20 800 200 950]" {
		t.Fatalf("read holding 0..3 through the gate: %v %v\n%s", v, err, out)
	}
	if _, out, err := mbpoll(t, g.addr, []string{"-t", "4", "-r", "50"}, "7", "8", "9"); err != nil || !strings.Contains(out, "Written 3 references") {
		t.Fatalf("write holding 50..52: %v\n%s", err, out)
	}
	if v, out, err := mbpoll(t, g.addr, []string{"-t", "4", "-r", "50", "-c", "3"}); err != nil || sprint(v) != "[7 8 9]" {
		t.Fatalf("read back: %v %v\n%s", v, err, out)
	}
	if _, out, err := mbpoll(t, g.addr, []string{"-t", "4", "-r", "60"}, "1"); err == nil || !strings.Contains(out, "Illegal data address") {
		t.Fatalf("denied write holding 60: %v\n%s", err, out)
	}
	if _, out, err := mbpoll(t, g.addr, []string{"-t", "4", "-r", "52"}, "500"); err == nil || !strings.Contains(out, "Illegal data value") {
		t.Fatalf("over-limit write: %v\n%s", err, out)
	}
	if v, out, err := mbpoll(t, g.addr, []string{"-t", "3", "-r", "0", "-c", "3"}); err != nil || len(v) != 3 {
		t.Fatalf("read input registers: %v %v\n%s", v, err, out)
	}
	if _, out, err := mbpoll(t, g.addr, []string{"-t", "0", "-r", "0"}, "1"); err != nil || !strings.Contains(out, "Written 1 references") {
		t.Fatalf("pump on: %v\n%s", err, out)
	}
	// mbpoll exits as soon as it has the last answer; the gate records a
	// transaction after relaying its response, so wait for all seven.
	g.rec.wait(t, 7)
	text := g.rec.text()
	for _, want := range []string{
		"write holding 50..52 = 7 8 9 -> ok (",
		"read holding 50..52 -> ok = 7 8 9 (",
		"write holding 60 = 1 -> denied, exception 02",
		"write holding 52 = 500 -> denied, exception 03",
		"write coil 0 = on -> ok (",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("transcript lacks %q:\n%s", want, text)
		}
	}
}

// startPymodbusDevice runs plant/testdata/modbus_server.py, a device made
// with pymodbus (not the project's plant), on loopback and returns its
// address.
func startPymodbusDevice(t *testing.T) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", pymodbustest.Start(t, nil, "127.0.0.1", "0"))
}

// TestThroughGateToPymodbusDevice: the device is pymodbus's server and the
// clients are pymodbus and mbpoll, so no Modbus code of the project is on
// either side of the gate. Allowed reads and writes arrive unchanged, denied
// ones get the gate's exception with the client's transaction id and never
// reach the device, and the transcript says what happened.
func TestThroughGateToPymodbusDevice(t *testing.T) {
	dev := startPymodbusDevice(t)
	g := startGate(t, dev, modbus.Enforce)
	res := runPymodbus(t, g.addr, 1, `[
		["rh",0,4], ["wr",52,55], ["rh",52,1], ["wr",60,1], ["rh",60,1], ["wr",52,101],
		["wc",0,true], ["rc",0,2], ["wc",5,true], ["ri",0,3], ["rd",0,3],
		["wm",50,[7,8,9]], ["rh",50,3], ["wm",54,[1,2,3]], ["rh",54,2], ["rh",100,1]]`)
	type want struct {
		exc    int
		values string // "" = no values
	}
	wants := []want{
		{0, "[0 1 2 3]"}, {0, ""}, {0, "[55]"}, {2, ""}, {0, "[60]"}, {3, ""},
		{0, ""}, {0, "[1 0]"}, {2, ""}, {0, "[1000 1001 1002]"}, {0, "[0 1 0]"},
		{0, ""}, {0, "[7 8 9]"}, {2, ""}, {0, "[54 55]"}, {2, ""},
	}
	if len(res) != len(wants) {
		t.Fatalf("%d results, want %d: %+v", len(res), len(wants), res)
	}
	for i, w := range wants {
		r := res[i]
		got := ""
		if len(r.Values) > 0 {
			got = sprint(r.Values)
		}
		if r.Error != "" || r.Exception != w.exc || r.OK != (w.exc == 0) || got != w.values {
			t.Errorf("op %d: %+v, want exception %d values %q", i, r, w.exc, w.values)
		}
	}
	recs := g.rec.wait(t, len(wants))
	byTID := map[int]*modbus.Record{}
	for _, r := range recs {
		byTID[int(r.TransactionID)] = r
	}
	for i, r := range res {
		rec := byTID[r.TID]
		switch {
		case rec == nil:
			t.Errorf("op %d: no record for pymodbus transaction %d", i, r.TID)
		case r.Exception != 0 && (rec.Verdict != modbus.VerdictDenied || int(rec.Exception) != r.Exception):
			t.Errorf("op %d: the client saw exception %d from the gate, record %s", i, r.Exception, rec)
		case r.OK && (rec.Verdict != modbus.VerdictAllowed || rec.Outcome != modbus.OutcomeOK):
			t.Errorf("op %d: the client saw ok, record %s", i, rec)
		}
	}
	text := g.rec.text()
	for _, want := range []string{
		"unit 1 read holding 0..3 -> ok = 0 1 2 3 (",
		"unit 1 write holding 52 = 55 -> ok (",
		`unit 1 write holding 60 = 1 -> denied, exception 02 illegal data address: modbus rules "alice-plc7": write holding 60 outside write ranges 50-55`,
		"unit 1 read holding 60 -> ok = 60 (",
		"unit 1 write holding 52 = 101 -> denied, exception 03 illegal data value",
		"unit 1 write coil 0 = on -> ok (",
		"unit 1 read coil 0..1 -> ok = 1 0 (",
		"unit 1 read input 0..2 -> ok = 1000 1001 1002 (",
		"unit 1 write holding 50..52 = 7 8 9 -> ok (",
		"unit 1 write holding 54..56 = 1 2 3 -> denied, exception 02",
		"unit 1 read holding 54..55 -> ok = 54 55 (",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("transcript lacks %q:\n%s", want, text)
		}
	}
	// mbpoll against the same device through the gate.
	if _, out, err := mbpoll(t, g.addr, []string{"-t", "4", "-r", "53"}, "4"); err != nil || !strings.Contains(out, "Written 1 references") {
		t.Fatalf("mbpoll write holding 53: %v\n%s", err, out)
	}
	if v, out, err := mbpoll(t, g.addr, []string{"-t", "4", "-r", "52", "-c", "2"}); err != nil || sprint(v) != "[9 4]" {
		t.Fatalf("mbpoll read holding 52..53: %v %v\n%s", v, err, out)
	}
	if _, out, err := mbpoll(t, g.addr, []string{"-t", "4", "-r", "0"}, "1"); err == nil || !strings.Contains(out, "Illegal data address") {
		t.Fatalf("mbpoll denied write holding 0: %v\n%s", err, out)
	}
}
