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
