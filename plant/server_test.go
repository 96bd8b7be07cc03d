package plant

import (
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

func startServer(t *testing.T) (string, *Tank) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tank := NewTank(nil)
	srv := &Server{Tank: tank, Unit: 1}
	done := make(chan struct{})
	go func() { srv.Serve(l); close(done) }()
	t.Cleanup(func() { l.Close(); <-done })
	return l.Addr().String(), tank
}

// MbpollResult is one mbpoll run: the values it printed, or its error text.
type mbpollResult struct {
	values []int
	out    string
	err    error
}

var mbpollValue = regexp.MustCompile(`(?m)^\[(\d+)\]:\s+(-?\d+)`)

// mbpoll runs mbpoll once against addr; args are its table/reference
// options and write values.
func mbpoll(t *testing.T, addr string, args ...string) mbpollResult {
	t.Helper()
	path, err := exec.LookPath("mbpoll")
	if err != nil {
		t.Skip("mbpoll not installed (apt-get install mbpoll)")
	}
	host, port, _ := net.SplitHostPort(addr)
	full := append([]string{"-m", "tcp", "-p", port, "-0", "-1", "-o", "10"}, args...)
	full = append(full, host)
	var values []string
	for i, a := range full {
		if a == "--" {
			values = full[i+1 : len(full)-1]
			full = append(append([]string{}, full[:i]...), host)
			break
		}
	}
	full = append(full, values...)
	out, err := exec.Command(path, full...).CombinedOutput()
	res := mbpollResult{out: string(out), err: err}
	for _, m := range mbpollValue.FindAllStringSubmatch(string(out), -1) {
		v, _ := strconv.Atoi(m[2])
		res.values = append(res.values, v)
	}
	return res
}

func TestServerWithMbpoll(t *testing.T) {
	addr, tank := startServer(t)
	r := mbpoll(t, addr, "-a", "1", "-t", "4", "-r", "0", "-c", "4")
	if r.err != nil || len(r.values) != 4 || r.values[0] != 20 || r.values[1] != 800 || r.values[2] != 200 || r.values[3] != 950 {
		t.Fatalf("read holding 0..3: %v %v\n%s", r.values, r.err, r.out)
	}
	r = mbpoll(t, addr, "-a", "1", "-t", "3", "-r", "0", "-c", "1")
	if r.err != nil || len(r.values) != 1 || r.values[0] < 400 || r.values[0] > 600 {
		t.Fatalf("read level: %v %v\n%s", r.values, r.err, r.out)
	}
	if r = mbpoll(t, addr, "-a", "1", "-t", "0", "-r", "0", "--", "1"); r.err != nil || !strings.Contains(r.out, "Written 1 references") {
		t.Fatalf("pump on: %v\n%s", r.err, r.out)
	}
	r = mbpoll(t, addr, "-a", "1", "-t", "1", "-r", "0", "-c", "3")
	if r.err != nil || len(r.values) != 3 || r.values[2] != 1 {
		t.Fatalf("discrete inputs (pump running = 1): %v %v\n%s", r.values, r.err, r.out)
	}
	if r = mbpoll(t, addr, "-a", "1", "-t", "4", "-r", "50", "--", "7", "8", "9"); r.err != nil {
		t.Fatalf("write holding 50..52: %v\n%s", r.err, r.out)
	}
	r = mbpoll(t, addr, "-a", "1", "-t", "4", "-r", "50", "-c", "3")
	if len(r.values) != 3 || r.values[0] != 7 || r.values[2] != 9 {
		t.Fatalf("read back 50..52: %v\n%s", r.values, r.out)
	}
	if r = mbpoll(t, addr, "-a", "1", "-t", "4", "-r", "0", "--", "101"); r.err == nil || !strings.Contains(r.out, "Illegal data value") {
		t.Fatalf("valve 101 %%: want illegal data value, got %v\n%s", r.err, r.out)
	}
	if r = mbpoll(t, addr, "-a", "1", "-t", "4", "-r", "100", "-c", "1"); r.err == nil || !strings.Contains(r.out, "Illegal data address") {
		t.Fatalf("holding 100: want illegal data address, got %v\n%s", r.err, r.out)
	}
	// The level rises while the pump runs (2 %/s in, 0.6 %/s out).
	before := tank.Level()
	deadline := time.Now().Add(20 * time.Second)
	for tank.Level() <= before+0.1 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if tank.Level() <= before {
		t.Fatalf("level did not rise with the pump on: %v -> %v", before, tank.Level())
	}
}

// PymodbusResult is one operation's result printed by modbus_client.py.
type PymodbusResult struct {
	OK        bool   `json:"ok"`
	Values    []int  `json:"values"`
	Exception int    `json:"exception"`
	Error     string `json:"error"`
	TID       int    `json:"tid"`
}

// pymodbus runs testdata/modbus_client.py (path given) with ops.
func pymodbus(t *testing.T, script, addr string, unit int, ops string) []PymodbusResult {
	t.Helper()
	if _, err := exec.LookPath("/usr/bin/python3"); err != nil {
		t.Skip("/usr/bin/python3 not installed")
	}
	if err := exec.Command("/usr/bin/python3", "-c", "import pymodbus.client").Run(); err != nil {
		t.Skip("python3-pymodbus not installed (apt-get install python3-pymodbus)")
	}
	host, port, _ := net.SplitHostPort(addr)
	out, err := exec.Command("/usr/bin/python3", script, host, port, strconv.Itoa(unit), ops).CombinedOutput()
	if err != nil {
		t.Fatalf("pymodbus client: %v\n%s", err, out)
	}
	var res []PymodbusResult
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("pymodbus output %q: %v", out, err)
	}
	return res
}

func TestServerWithPymodbus(t *testing.T) {
	addr, _ := startServer(t)
	res := pymodbus(t, "testdata/modbus_client.py", addr, 1,
		`[["rh",0,4],["ri",0,3],["wc",0,true],["rd",0,3],["wm",50,[1,2,3]],["rh",50,3],["wr",0,101],["rh",99,2],["rc",0,2]]`)
	type want struct {
		ok     bool
		values string // "" = not checked here
		exc    int
	}
	wants := []want{
		{true, "[20 800 200 950]", 0}, {true, "", 0}, {true, "[]", 0}, {true, "", 0}, {true, "[]", 0},
		{true, "[1 2 3]", 0}, {false, "[]", 3}, {false, "[]", 2}, {true, "[1 0]", 0},
	}
	if len(res) != len(wants) {
		t.Fatalf("%d results: %+v", len(res), res)
	}
	for i, w := range wants {
		got := res[i]
		if got.OK != w.ok || got.Exception != w.exc || got.Error != "" || got.TID != i+1 ||
			(w.values != "" && fmt.Sprint(got.Values) != w.values) {
			t.Errorf("op %d: %+v, want %+v with transaction id %d", i, got, w, i+1)
		}
	}
	if len(res[1].Values) != 3 || res[1].Values[0] < 400 || res[1].Values[0] > 600 {
		t.Errorf("input registers %v, want level near 500", res[1].Values)
	}
	if len(res[3].Values) != 3 || res[3].Values[2] != 1 {
		t.Errorf("discrete inputs %v, want pump running", res[3].Values)
	}
	if res := pymodbus(t, "testdata/modbus_client.py", addr, 2, `[["rh",0,1]]`); res[0].Exception != 0x0B {
		t.Errorf("unit 2: %+v, want exception 0B", res[0])
	}
}
