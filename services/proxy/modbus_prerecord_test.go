package proxy

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/otgate/otgate/client"
	"github.com/otgate/otgate/inspect/modbus"
	"github.com/otgate/otgate/services/identity/swtpmtest"
	"github.com/otgate/otgate/services/proxy/auth/totp"
)

// readADU reads one Modbus/TCP frame from c.
func readADU(c net.Conn) ([]byte, error) {
	h := make([]byte, 6)
	if _, err := io.ReadFull(c, h); err != nil {
		return nil, err
	}
	b := make([]byte, int(h[4])<<8|int(h[5]))
	if _, err := io.ReadFull(c, b); err != nil {
		return nil, err
	}
	return append(h, b...), nil
}

func unhex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// TestModbusWriteRecordedBeforeGateCrash: the whole gate runs in its own
// process (the benchmark's gate child: identity on swtpm, audit log signed
// by the TPM key, the proxy) in front of a device on loopback. A read and a
// write are answered; a second write reaches the device, which holds its
// answer, and the gate is killed (SIGKILL) before any response. The log
// holds the second write (recorded before it was forwarded): `otgate audit
// show` prints each write once, the completed one as "-> ok" and the other
// as forwarded with no response recorded, and `otgate audit verify` with
// the gate's key passes (the end unsealed).
func TestModbusWriteRecordedBeforeGateCrash(t *testing.T) {
	tpm := swtpmtest.Start(t, "")
	dir := t.TempDir()
	dev, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	heldWrite := make(chan []byte, 1)
	go func() {
		c, err := dev.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		for i := 0; ; i++ {
			f, err := readADU(c)
			if err != nil {
				return
			}
			switch i {
			case 0: // read holding 0: 7
				c.Write(unhex("00010000000501030200" + "07"))
			case 1: // write single register: echoed
				c.Write(f)
			default: // holds the answer: the gate dies first
				heldWrite <- f
			}
		}
	}()

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s %s %s", modbusGateEnv, tpm.Socket, dev.Addr(), dir))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	in, err := cmd.StdinPipe() // kept open: the child serves until it closes
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	t.Cleanup(func() {
		if !killed {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	var addr, secret string
	if _, serr := fmt.Sscan(line, &addr, &secret); err != nil || serr != nil {
		t.Fatalf("gate child said %q (%v): %s", line, err, stderr.String())
	}
	sb, err := totp.DecodeSecret(secret)
	if err != nil {
		t.Fatal(err)
	}
	code, err := totp.Code(sb, time.Now(), totp.DefaultParams)
	if err != nil {
		t.Fatal(err)
	}
	cdir := filepath.Join(dir, "client")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := client.Login(ctx, client.LoginOptions{Gate: addr, TrustFirstUse: true, User: "bench", Password: "correct horse battery", Code: code, Dir: cdir}); err != nil {
		t.Fatalf("login: %v", err)
	}
	cs, err := client.Open(cdir)
	if err != nil {
		t.Fatal(err)
	}
	c, r, err := cs.Tunnel(ctx, "plc-1", "modbus")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := modbusExchange(t, c, "000100000006010300000001"); got != "00010000000501030200"+"07" {
		t.Fatalf("read holding 0 = %s", got)
	}
	if got := modbusExchange(t, c, "0002000000060106000a0037"); got != "0002000000060106000a0037" {
		t.Fatalf("write holding 10 = 55 answered %s", got)
	}
	// The answer is relayed as it arrives (cut-through) and recorded
	// once complete, so its record can trail the answer by a moment: wait
	// for it in the live log before the next write, whose answer the
	// gate will not live to record.
	logDir := filepath.Join(dir, "audit")
	bin := buildOtgate(t)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		shown, _ := exec.Command(bin, "audit", "show", "--session", r.Session, logDir).CombinedOutput()
		if strings.Contains(string(shown), " bench plc-1 unit 1 write holding 10 = 55 -> ok (") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the answered write of 55 to holding 10 is not in the log after 20 s:\n%s", shown)
		}
	}
	if _, err := c.Write(unhex("0003000000060106000b0042")); err != nil {
		t.Fatal(err)
	}
	select {
	case f := <-heldWrite:
		if hex.EncodeToString(f) != "0003000000060106000b0042" {
			t.Fatalf("device received % x, want the write of 66 to holding 11", f)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the device did not receive the second write")
	}
	cmd.Process.Kill() // the gate dies between forwarding the write and its response
	cmd.Wait()
	killed = true

	pub, err := x509.MarshalPKIXPublicKey(c.ConnectionState().PeerCertificates[0].PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	keyPath := filepath.Join(dir, "gate.pem")
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o600); err != nil {
		t.Fatal(err)
	}
	shown, err := exec.Command(bin, "audit", "show", "--session", r.Session, logDir).CombinedOutput()
	if err != nil {
		t.Fatalf("otgate audit show: %v\n%s", err, shown)
	}
	t.Logf("otgate audit show --session %s:\n%s", r.Session, shown)
	text := string(shown)
	for _, want := range []string{
		" bench plc-1 unit 1 read holding 0 -> ok = 7 (",
		" bench plc-1 unit 1 write holding 10 = 55 -> ok (",
		" bench plc-1 unit 1 write holding 11 = 66 -> forwarded, no response recorded (gate stopped?)\n",
		"-- session " + r.Session + " has no end record",
	} {
		if n := strings.Count(text, want); n != 1 {
			t.Errorf("the transcript shows %q %d times, want once", want, n)
		}
	}
	if n := strings.Count(text, "write holding"); n != 2 {
		t.Errorf("the transcript has %d lines of writes, want 2 (each write once)", n)
	}
	verified, err := exec.Command(bin, "audit", "verify", "--key", keyPath, logDir).CombinedOutput()
	if err != nil || !strings.Contains(string(verified), "OK up to the end reported above, which is NOT sealed") {
		t.Fatalf("otgate audit verify --key: %v\n%s", err, verified)
	}
	t.Logf("otgate audit verify:\n%s", verified)
}

// TestModbusWriteNotForwardedWhenTheLogFails: the gate's audit log is on a
// small tmpfs that fills up during a session (the session-start record
// got in). The next write cannot be recorded before forwarding: the
// device (a real TCP peer in the plant namespace) never receives it, the
// client gets no answer, the connection ends, and the gate gives the
// reason (audit log failed, the write not forwarded).
func TestModbusWriteNotForwardedWhenTheLogFails(t *testing.T) {
	l := newLab(t)
	devLn := l.listenPlant(t, 502)
	received := oneReadDevice(devLn)
	g, mnt, log := smallLogGate(t, l)
	rules := modbus.Rules{Name: "alice-plc", Units: []int{1}, Functions: []string{"read-write"},
		HoldingRegisters: modbus.TableRanges{Read: []modbus.Range{{First: 0, Last: 9}}, Write: []modbus.Range{{First: 1, Last: 2}}}}
	pol, err := rules.Compile()
	if err != nil {
		t.Fatal(err)
	}
	g.setGrants(grant{rule: "alice-plc", user: "alice", asset: "plc-1", protocol: "modbus", modbus: pol})
	alice := g.mustLogin("alice")
	c, r, err := tunnel(t, alice, "plc-1", "modbus")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := modbusExchange(t, c, "000100000006010300010001"); got != "00010000000501030200"+"07" {
		t.Fatalf("read holding 1 = %s", got)
	}
	fillLogDisk(t, mnt, log)
	// write holding 2 = 5: allowed by the rules, but it cannot be recorded.
	if _, err := c.Write(unhex("000200000006010600020005")); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, c, 30*time.Second)
	select {
	case got := <-received:
		if hex.EncodeToString(got) != "000100000006010300010001" {
			t.Fatalf("the device received % x; want the read alone (the write's record failed)", got)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the gate did not close the device connection")
	}
	line := waitGateLine(t, g, fmt.Sprintf("proxy: session %s of alice to plc-1/modbus ended: audit log failed: ", r.Session))
	if !strings.Contains(line, "no space left on device") || !strings.Contains(line, "(recording unit 1 write holding 2 = 5 (not forwarded))") {
		t.Fatalf("end reason %q: want the log's error and the write not forwarded", line)
	}
	t.Logf("%s", line)
}

// oneReadDevice is a device on ln that takes one connection, answers its
// first request as a read of holding register 1 (= 7), and sends on the
// channel every byte it received once the gate closes the connection
// (nil when not even one request came).
func oneReadDevice(ln net.Listener) <-chan []byte {
	received := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		f, err := readADU(c)
		if err != nil {
			received <- nil
			return
		}
		c.Write(unhex("00010000000501030200" + "07")) // read holding 1: 7
		rest, _ := io.ReadAll(c)
		received <- append(f, rest...)
	}()
	return received
}
