package proxy

import (
	"encoding/hex"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/otgate/otgate/audit"
	"github.com/otgate/otgate/plant/pymodbustest"
)

// deviceSite: plc-1 in zone cell (mode MODE) with a grant for alice
// through the real policy path (SiteFileLoader).
const deviceSite = `site: lab
zones:
  - name: cell
    owner: ot@lab.example
    mode: MODE
    interface: eth1
    subnet: 10.99.0.0/24
    gate_address: 10.99.0.1
assets:
  - name: plc-1
    zone: cell
    address: 10.99.0.5
    services:
      - protocol: modbus
users:
  - name: alice
grants:
  - name: alice-plc
    subjects:
      users: [alice]
    targets:
      assets: [plc-1]
    protocols: [modbus]
    modbus:
      units: [1]
      functions: [read-write]
      coils:
        read: ["0-15"]
        write: ["0"]
      holding-registers:
        read: ["0-9"]
        write: ["5-6"]
      limits:
        - {registers: "6", min: 0, max: 100}
`

// startPymodbusInPlant runs the pymodbus device (pymodbustest, a device
// made with pymodbus, not the project's plant) on port 502 of every plant
// address, inside the plant namespace, with the script's options.
func startPymodbusInPlant(t *testing.T, l *lab, options ...string) {
	t.Helper()
	pymodbustest.Start(t, []string{"nsenter", "-t", strconv.Itoa(l.plantPID), "-n"}, "0.0.0.0", "502", options...)
}

// connectAlice starts a gate whose policy is the site file at sitePath
// (the real policy path, SiteFileLoader), logs alice in with the otgate
// CLI and runs `otgate connect plc-1`. It returns the gate, the CLI, the
// port connect listens on and connect's output lines.
func connectAlice(t *testing.T, l *lab, sitePath string) (*gate, string, string, <-chan string) {
	t.Helper()
	g := newGate(t, l, func(c *Config) { c.LoadPolicy = SiteFileLoader(sitePath) })
	secret := g.enrol("alice")

	bin := buildOtgate(t)
	profile := filepath.Join(g.dir, "alice-profile")
	login := exec.Command(bin, "login", "--profile", profile, "--user", "alice", "--code", oathtool(t, secret), "--password-stdin", "--pin", g.keyPin(t), "otgate://"+g.addr)
	login.Stdin = strings.NewReader("correct horse battery\n")
	if out, err := login.CombinedOutput(); err != nil || !strings.Contains(string(out), "logged in as alice") {
		t.Fatalf("otgate login: %v\n%s", err, out)
	}
	connect := exec.Command(bin, "connect", "plc-1", "--listen", "127.0.0.1:0", "--profile", profile)
	stdout, err := connect.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	connect.Stderr = connect.Stdout
	if err := connect.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { connect.Process.Kill(); connect.Wait() })
	lines := lineReader(stdout)
	port := waitLine(t, lines, regexp.MustCompile(`listening on 127\.0\.0\.1:(\d+) for plc-1/modbus`))[1]
	return g, bin, port, lines
}

// runPymodbus runs ops with pymodbus (plant/testdata/modbus_client.py) on
// one connection to port, addressed to unit.
func runPymodbus(t *testing.T, port string, unit int, ops string) []pymodbusResult {
	t.Helper()
	out, err := exec.Command("/usr/bin/python3", "../../plant/testdata/modbus_client.py", "127.0.0.1", port, strconv.Itoa(unit), ops).CombinedOutput()
	if err != nil {
		t.Fatalf("pymodbus client: %v\n%s", err, out)
	}
	return parsePymodbus(t, out)
}

// parsePymodbus decodes the results modbus_client.py printed.
func parsePymodbus(t *testing.T, out []byte) []pymodbusResult {
	t.Helper()
	var res []pymodbusResult
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("pymodbus output %q: %v", out, err)
	}
	return res
}

// checkResults compares pymodbus results with wants ("ok [1 2]",
// "exception 2").
func checkResults(t *testing.T, res []pymodbusResult, wants []string) {
	t.Helper()
	if len(res) != len(wants) {
		t.Fatalf("%d results, want %d: %+v", len(res), len(wants), res)
	}
	for i, w := range wants {
		r := res[i]
		got := "ok " + sprintInts(r.Values)
		if r.Exception != 0 || !r.OK {
			got = "exception " + strconv.Itoa(r.Exception) + r.Error
		}
		if got != w {
			t.Errorf("op %d: %+v (%s), want %s", i, r, got, w)
		}
	}
}

// showSession is `otgate audit show --session` of the gate's log.
func showSession(t *testing.T, bin string, g *gate, session string) string {
	t.Helper()
	out, err := exec.Command(bin, "audit", "show", "--session", session, g.logDir).CombinedOutput()
	if err != nil {
		t.Fatalf("otgate audit show --session %s: %v\n%s", session, err, out)
	}
	return string(out)
}

// pymodbusResult is one result of plant/testdata/modbus_client.py.
type pymodbusResult struct {
	OK        bool   `json:"ok"`
	Values    []int  `json:"values"`
	Exception int    `json:"exception"`
	Error     string `json:"error"`
	TID       int    `json:"tid"`
}

// TestModbusIndependentDeviceThroughConnect: no Modbus code of the project
// on either side of the gate. The device is pymodbus's server in the plant
// namespace, the clients are pymodbus and mbpoll on `otgate connect`, the
// policy is a site file. Allowed operations arrive unchanged; denied ones
// get the gate's exception with the client's transaction id and leave the
// device as it was; a malformed frame ends the session, its reason in the
// session-end record and in `otgate audit show`; the transcript names
// every operation. With the zone in monitor mode the same write passes and
// is recorded as "would deny"; a session opened in monitor mode is
// enforced from its next request on when the zone is switched back to
// enforce (its connection up), the switch recorded.
func TestModbusIndependentDeviceThroughConnect(t *testing.T) {
	for _, b := range []string{"mbpoll", "/usr/bin/python3"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("%s not installed (apt-get install mbpoll python3)", b)
		}
	}
	l := newLab(t)
	startPymodbusInPlant(t, l)
	sitePath := filepath.Join(t.TempDir(), "site.yaml")
	setMode := func(mode string) {
		t.Helper()
		if err := os.WriteFile(sitePath, []byte(strings.Replace(deviceSite, "MODE", mode, 1)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	setMode("enforce")
	g, bin, port, lines := connectAlice(t, l, sitePath)
	sessionRe := regexp.MustCompile(`session ([0-9a-f]+) allowed by rule alice-plc`)

	// pymodbus runs ops on one connection (one session) and returns the
	// results and the session id.
	pymodbus := func(ops string) ([]pymodbusResult, string) {
		t.Helper()
		return runPymodbus(t, port, 1, ops), waitLine(t, lines, sessionRe)[1]
	}
	show := func(session string) string {
		t.Helper()
		return showSession(t, bin, g, session)
	}
	check := func(res []pymodbusResult, wants []string) {
		t.Helper()
		checkResults(t, res, wants)
	}

	res, session := pymodbus(`[["rh",0,4], ["wr",5,55], ["wr",7,1], ["rh",7,1], ["wr",6,101], ["rh",5,2],
		["wc",0,true], ["rc",0,2], ["wc",1,true], ["rh",10,1]]`)
	check(res, []string{"ok [0 1 2 3]", "ok []", "exception 2", "ok [7]", "exception 3", "ok [55 6]",
		"ok []", "ok [1 0]", "exception 2", "exception 2"})
	g.waitEnd(session, EndClientClosed)
	// The gate's exceptions carry pymodbus's transaction ids.
	for _, op := range []int{2, 4, 8, 9} {
		r := res[op]
		rec := g.waitRecord("the record of the denied transaction", func(b audit.Body) bool {
			p, ok := b.(audit.Payload)
			return ok && p.SessionID == session && p.Decoded != nil && int(p.Decoded.Transaction) == r.TID
		}).(audit.Payload)
		if d := rec.Decoded; d.Verdict != "denied" || int(d.Exception) != r.Exception {
			t.Errorf("denied op %d: record %+v, want denied with exception %d", op, *d, r.Exception)
		}
	}
	text := show(session)
	t.Logf("otgate audit show --session %s:\n%s", session, text)
	for _, want := range []string{
		" start alice -> plc-1 (modbus) rule \"alice-plc\"",
		" alice plc-1 unit 1 read holding 0..3 -> ok = 0 1 2 3 (",
		" alice plc-1 unit 1 write holding 5 = 55 -> ok (",
		` alice plc-1 unit 1 write holding 7 = 1 -> denied, exception 02 illegal data address: modbus rules "alice-plc": write holding 7 outside write ranges 5-6`,
		" alice plc-1 unit 1 read holding 7 -> ok = 7 (",
		` alice plc-1 unit 1 write holding 6 = 101 -> denied, exception 03 illegal data value: modbus rules "alice-plc": write holding 6 = 101 outside limit 0..100`,
		" alice plc-1 unit 1 write coil 0 = on -> ok (",
		" alice plc-1 unit 1 read coil 0..1 -> ok = 1 0 (",
		" alice plc-1 unit 1 write coil 1 = on -> denied, exception 02",
		" alice plc-1 unit 1 read holding 10 -> denied, exception 02",
		" end client closed",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("transcript lacks %q", want)
		}
	}
	// Each allowed write is in the log twice (recorded before it was
	// forwarded, and at its response) and shown once.
	for _, w := range []string{" write holding 5 = 55 -> ", " write coil 0 = on -> "} {
		if n := strings.Count(text, w); n != 1 {
			t.Errorf("transcript shows %q %d times, want once", w, n)
		}
	}
	if strings.Contains(text, "-> forwarded") {
		t.Errorf("transcript shows a completed write as forwarded:\n%s", text)
	}
	var before int
	for _, e := range g.entries() {
		if p, ok := e.Body.(audit.Payload); ok && p.SessionID == session && p.Decoded != nil && p.Decoded.Result == "forwarded" {
			before++
		}
	}
	if before != 2 {
		t.Errorf("%d records made before forwarding in the session, want 2 (the two allowed writes)", before)
	}

	// mbpoll, a second independent client.
	if out, err := exec.Command("mbpoll", "-m", "tcp", "-a", "1", "-0", "-1", "-o", "10", "-t", "4", "-r", "6", "-p", port, "127.0.0.1", "42").CombinedOutput(); err != nil || !strings.Contains(string(out), "Written 1 references") {
		t.Fatalf("mbpoll allowed write: %v\n%s", err, out)
	}
	waitLine(t, lines, sessionRe)
	if out, err := exec.Command("mbpoll", "-m", "tcp", "-a", "1", "-0", "-1", "-o", "10", "-t", "4", "-r", "8", "-p", port, "127.0.0.1", "42").CombinedOutput(); err == nil || !strings.Contains(string(out), "Illegal data address") {
		t.Fatalf("mbpoll denied write: %v\n%s", err, out)
	}
	waitLine(t, lines, sessionRe)

	// A request framed correctly whose values Modbus forbids (126
	// registers) is answered as a device answers it, exception 03 with
	// its transaction id, and the session goes on. A malformed frame (a
	// byte count of 4 with 2 bytes following) ends the session; the
	// reason is recorded and nothing of the frame reaches the device.
	c, err := net.Dial("tcp", "127.0.0.1:"+port)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := modbusExchange(t, c, "0001000000060103000500"+"02"); got != "000100000007010304"+"0037"+"002a" {
		t.Fatalf("read holding 5..6 = %s, want 55 42", got)
	}
	session = waitLine(t, lines, sessionRe)[1]
	if got := modbusExchange(t, c, "000300000006010300050"+"07e"); got != "000300000003018303" {
		t.Fatalf("read of 126 registers answered %s, want exception 03 with transaction 3", got)
	}
	bad, _ := hex.DecodeString("000200000009011000060001040001")
	c.Write(bad)
	waitClosed(t, c, 30*time.Second)
	const reason = "modbus: client->device frame at byte 24: function 16: byte count 4 but 2 value bytes follow"
	if end := g.waitEnd(session, reason); end.BytesToAsset != 12 || end.BytesToClient != 22 {
		t.Errorf("session end %+v: want 12 bytes to the asset (the read; the illegal and malformed frames never reached it) and 22 to the client", end)
	}
	if text := show(session); !strings.Contains(text, "read holding 5..130 -> denied, exception 03 illegal data value: illegal request: quantity 126 out of range 1..125") {
		t.Errorf("audit show lacks the illegal request's answer:\n%s", text)
	}
	if text := show(session); !strings.Contains(text, " end "+reason) {
		t.Errorf("audit show of the malformed session lacks the reason %q:\n%s", reason, text)
	}
	if res, _ := pymodbus(`[["rh",6,1]]`); len(res) != 1 || sprintInts(res[0].Values) != "[42]" {
		t.Errorf("holding 6 after the malformed write: %+v, want 42 (the frame never reached the device)", res)
	}

	// Monitor mode: the write enforce mode denies reaches the device and
	// is recorded as "would deny".
	setMode("monitor")
	if _, err := g.srv.Reload(); err != nil {
		t.Fatal(err)
	}
	res, session = pymodbus(`[["wr",7,1], ["rh",7,1]]`)
	check(res, []string{"ok []", "ok [1]"})
	g.waitEnd(session, EndClientClosed)
	if text := show(session); !strings.Contains(text, ` alice plc-1 unit 1 write holding 7 = 1 -> ok (`) ||
		!strings.Contains(text, `[would deny, exception 02 illegal data address: modbus rules "alice-plc": write holding 7 outside write ranges 5-6]`) ||
		strings.Count(text, " write holding 7 = 1 -> ") != 1 {
		t.Errorf("monitor-mode transcript lacks the would-deny write, or shows it more than once:\n%s", text)
	}

	// A session opened in monitor mode is enforced from its next request
	// once the zone is switched back to enforce, its connection up.
	c2, err := net.Dial("tcp", "127.0.0.1:"+port)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if got := modbusExchange(t, c2, "0003000000060103000700"+"01"); got != "00030000000501030200"+"01" {
		t.Fatalf("read holding 7 = %s, want 1", got)
	}
	session = waitLine(t, lines, sessionRe)[1]
	if got := modbusExchange(t, c2, "000400000006010600070002"); got != "000400000006010600070002" {
		t.Fatalf("write holding 7 = 2 in monitor mode answered %s, want the device's echo", got)
	}
	setMode("enforce")
	if rep, err := g.srv.Reload(); err != nil || rep.Ended != 0 {
		t.Fatalf("Reload = %d, %v; want no session ended", rep.Ended, err)
	}
	ev := g.waitEvent(EventSessionRules, "alice", "policy reload: its asset's zone enforces now: a request the rules deny is refused with its exception")
	if ev.SessionID != session {
		t.Errorf("mode event %+v: want session %s", ev, session)
	}
	if got := modbusExchange(t, c2, "000500000006010600070003"); got != "000500000003018602" {
		t.Fatalf("write holding 7 = 3 after the switch to enforce answered %s, want exception 02", got)
	}
	if got := modbusExchange(t, c2, "0006000000060103000700"+"01"); got != "00060000000501030200"+"02" {
		t.Fatalf("read holding 7 = %s, want 2 (the monitor-mode write, not the refused one)", got)
	}
	c2.Close()
	g.waitEnd(session, EndClientClosed)
	if text := show(session); !strings.Contains(text, ` alice plc-1 unit 1 write holding 7 = 2 -> ok (`) ||
		!strings.Contains(text, `session-rules-changed`) ||
		!strings.Contains(text, ` alice plc-1 unit 1 write holding 7 = 3 -> denied, exception 02 illegal data address: modbus rules "alice-plc": write holding 7 outside write ranges 5-6`) {
		t.Errorf("transcript of the session across the switch to enforce:\n%s", text)
	}
}

func sprintInts(v []int) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.Itoa(x)
	}
	return "[" + strings.Join(s, " ") + "]"
}
