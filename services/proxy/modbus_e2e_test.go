package proxy

import (
	"bufio"
	"io"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/otgate/otgate/audit"
	"github.com/otgate/otgate/inspect/modbus"
	"github.com/otgate/otgate/plant"
)

// buildOtgate builds the otgate CLI for the test.
func buildOtgate(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "otgate")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/otgate/otgate/cmd/otgate").CombinedOutput()
	if err != nil {
		t.Fatalf("build otgate: %v\n%s", err, out)
	}
	return bin
}

// lineReader hands out the lines a process prints.
func lineReader(r io.Reader) <-chan string {
	ch := make(chan string, 64)
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			ch <- sc.Text()
		}
		close(ch)
	}()
	return ch
}

func waitLine(t *testing.T, ch <-chan string, re *regexp.Regexp) []string {
	t.Helper()
	timeout := time.After(60 * time.Second)
	for {
		select {
		case l, ok := <-ch:
			if !ok {
				t.Fatalf("output ended before a line matching %s", re)
			}
			t.Logf("otgate connect: %s", l)
			if m := re.FindStringSubmatch(l); m != nil {
				return m
			}
		case <-timeout:
			t.Fatalf("no line matching %s within 60s", re)
		}
	}
}

// rawModbus sends one request ADU with /usr/bin/python3 (an independent
// peer) and prints the response ADU in hex.
const rawModbus = `
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=30)
s.sendall(bytes.fromhex(sys.argv[2]))
hdr = b""
while len(hdr) < 6:
    c = s.recv(6 - len(hdr))
    if not c: raise SystemExit("closed")
    hdr += c
n = int.from_bytes(hdr[4:6], "big")
body = b""
while len(body) < n:
    c = s.recv(n - len(body))
    if not c: raise SystemExit("closed")
    body += c
print((hdr + body).hex())
`

func TestModbusThroughConnect(t *testing.T) {
	for _, b := range []string{"mbpoll", "/usr/bin/python3"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("%s not installed (apt-get install mbpoll python3)", b)
		}
	}
	l := newLab(t)
	srv := &plant.Server{Tank: plant.NewTank(nil), Unit: 1}
	go srv.Serve(l.listenPlant(t, 502))
	g := newGate(t, l)
	rules := modbus.Rules{Name: "alice-plc", Units: []int{1}, Functions: []string{"read-write"},
		HoldingRegisters: modbus.TableRanges{Read: []modbus.Range{{First: 0, Last: 9}}, Write: []modbus.Range{{First: 1, Last: 2}}}}
	pol, err := rules.Compile()
	if err != nil {
		t.Fatal(err)
	}
	g.setGrants(grant{rule: "alice-plc", user: "alice", asset: "plc-1", protocol: "modbus", modbus: pol})
	secret := g.enrol("alice")

	bin := buildOtgate(t)
	profile := filepath.Join(g.dir, "alice-profile")
	login := exec.Command(bin, "login", "--profile", profile, "--user", "alice", "--code", oathtool(t, secret), "--password-stdin", "--pin", g.keyPin(t), "otgate://"+g.addr)
	login.Stdin = strings.NewReader("correct horse battery\n")
	out, err := login.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "pinned "+g.addr+"'s key SHA-256 "+g.keyPin(t)) || !strings.Contains(string(out), "logged in as alice") {
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

	// An allowed read with mbpoll (0-based references).
	out, err = exec.Command("mbpoll", "-m", "tcp", "-a", "1", "-0", "-r", "0", "-c", "4", "-t", "4", "-1", "-p", port, "127.0.0.1").CombinedOutput()
	if err != nil || !regexp.MustCompile(`\[3\]:\s+\d+`).Match(out) {
		t.Fatalf("mbpoll read through the gate: %v\n%s", err, out)
	}
	session := waitLine(t, lines, regexp.MustCompile(`session ([0-9a-f]+) allowed by rule alice-plc`))[1]

	// An allowed write of the high setpoint with mbpoll.
	out, err = exec.Command("mbpoll", "-m", "tcp", "-a", "1", "-0", "-r", "1", "-t", "4", "-1", "-p", port, "127.0.0.1", "800").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Written 1 references") {
		t.Fatalf("mbpoll allowed write: %v\n%s", err, out)
	}
	waitLine(t, lines, regexp.MustCompile(`session ([0-9a-f]+) allowed`))
	py := func(adu string) string {
		t.Helper()
		out, err := exec.Command("/usr/bin/python3", "-c", rawModbus, port, adu).CombinedOutput()
		if err != nil {
			t.Fatalf("python raw modbus %s: %v\n%s", adu, err, out)
		}
		waitLine(t, lines, regexp.MustCompile(`session ([0-9a-f]+) allowed`))
		return strings.TrimSpace(string(out))
	}
	// Read back register 1 (800 = 0x0320) and the alarm level (3).
	if got := py("000100000006010300010001"); got != "00010000000501030203"+"20" {
		t.Fatalf("read of the high setpoint = %s, want 800 (0x0320)", got)
	}
	alarmBefore := py("000200000006010300030001")

	// A denied write (alarm level, register 3): exception 02 with the same
	// transaction id, and the device never sees it.
	denied := py("beef000000060106000303e7")
	if denied != "beef00000003018602" {
		t.Fatalf("denied write answered %s, want beef00000003018602 (tid beef, exception 02)", denied)
	}
	rec := g.waitRecord("decoded record of transaction 0xbeef", func(b audit.Body) bool {
		p, ok := b.(audit.Payload)
		return ok && p.Decoded != nil && p.Decoded.Transaction == 0xbeef
	}).(audit.Payload)
	deniedSession := rec.SessionID
	if d := rec.Decoded; d.Function != 6 || d.Start != 3 || !strings.HasPrefix(d.Outcome, "denied") || len(d.Values) != 1 || d.Values[0] != 999 {
		t.Fatalf("decoded record %+v: want a denied write of 999 to holding register 3", *d)
	}
	if got := py("000300000006010300030001"); got[4:] != alarmBefore[4:] {
		t.Fatalf("the denied write reached the device: alarm level %s -> %s", alarmBefore, got)
	}

	// The decoded transcript, as the audit command prints it.
	g.waitEnd(deniedSession, "")
	out, err = exec.Command(bin, "audit", "show", "--session", deniedSession, g.logDir).CombinedOutput()
	if err != nil {
		t.Fatalf("otgate audit show: %v\n%s", err, out)
	}
	t.Logf("otgate audit show --session %s:\n%s", deniedSession, out)
	for _, want := range []string{" start alice -> plc-1", "alice-plc", "write holding 3 = 999 -> denied", "exception 02", " end client closed"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("transcript lacks %q", want)
		}
	}
	_ = session
}
