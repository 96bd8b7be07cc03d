package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/otgate/otgate/client"
	"github.com/otgate/otgate/services/identity/swtpmtest"
	"github.com/otgate/otgate/services/proxy/auth/totp"
)

// benchProc is a process the Modbus benchmark started: the plant, the
// gate, haproxy or swtpm. Its CPU time is read from /proc.
type benchProc struct {
	name  string
	pid   int
	cmd   *exec.Cmd
	in    io.WriteCloser
	lines chan string // what a child prints after its first line
}

// cpu returns the process's user+system CPU time so far (all threads).
func (p *benchProc) cpu(b *testing.B) time.Duration {
	b.Helper()
	d, err := procCPU(p.pid)
	if err != nil {
		b.Fatalf("CPU time of %s (pid %d): %v", p.name, p.pid, err)
	}
	return d
}

// procCPU reads utime+stime of pid from /proc/PID/stat (the whole thread
// group). The kernel scales them to the precise run time, so the tick
// granularity does not bias a sum over a window of seconds.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no ')' in %q", pid, s)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields after the name, want at least 13", pid, len(f))
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	const clkTck = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / clkTck, nil
}

// startChild re-executes this test binary with env set and returns it
// once it printed its first line (the returned line).
func startChild(b *testing.B, name, env string) (*benchProc, string) {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$", "-test.bench=^$")
	cmd.Env = append(os.Environ(), env)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatalf("start the %s child: %v", name, err)
	}
	p := &benchProc{name: name, pid: cmd.Process.Pid, cmd: cmd, in: in, lines: make(chan string, 16)}
	b.Cleanup(func() { p.stop(10 * time.Second) })
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
	}()
	select {
	case l := <-p.lines:
		if l == "" {
			b.Fatalf("the %s child exited before it was ready (its stderr is above)", name)
		}
		return p, l
	case <-time.After(90 * time.Second):
		b.Fatalf("the %s child printed nothing within 90s", name)
	}
	return nil, ""
}

// command sends a line to the child and waits for its answer.
func (p *benchProc) command(b *testing.B, line, want string) {
	b.Helper()
	if _, err := fmt.Fprintln(p.in, line); err != nil {
		b.Fatalf("%s: send %q: %v", p.name, line, err)
	}
	select {
	case got := <-p.lines:
		if got != want {
			b.Fatalf("%s answered %q to %q, want %q", p.name, got, line, want)
		}
	case <-time.After(30 * time.Second):
		b.Fatalf("%s did not answer %q within 30s", p.name, line)
	}
}

// stop closes the child's standard input (its signal to shut down
// cleanly) and kills it if it has not exited within grace.
func (p *benchProc) stop(grace time.Duration) error {
	if p.cmd.ProcessState != nil {
		return nil
	}
	if p.in != nil {
		p.in.Close()
	}
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(grace):
		p.cmd.Process.Kill()
		<-done
		return fmt.Errorf("%s (pid %d) did not exit within %v of its input closing: killed", p.name, p.pid, grace)
	}
}

// startBenchPlant runs the plant simulator's Modbus server in its own
// process; every path of the benchmark ends at it.
func startBenchPlant(b *testing.B) (*benchProc, string) {
	b.Helper()
	return startChild(b, "plant", modbusPlantEnv+"=1")
}

// modbusBenchGate is the parent's view of the gate child.
type modbusBenchGate struct {
	*benchProc
	addr    string
	dir     string // the child's state; the audit log is dir/audit
	tpm     *benchProc
	session *client.Session
}

// startModbusBenchGate starts swtpm and the gate child in front of the
// plant at plantAddr and logs the bench user in (password + TOTP).
func startModbusBenchGate(b *testing.B, plantAddr string) *modbusBenchGate {
	b.Helper()
	tpm := swtpmtest.Start(b, "")
	dir := b.TempDir()
	p, line := startChild(b, "gate", fmt.Sprintf("%s=%s %s %s", modbusGateEnv, tpm.Socket, plantAddr, dir))
	var addr, secret string
	if _, err := fmt.Sscan(line, &addr, &secret); err != nil {
		b.Fatalf("gate child said %q: want \"ADDR SECRET\"", line)
	}
	g := &modbusBenchGate{benchProc: p, addr: addr, dir: dir, tpm: swtpmProc(b, tpm.Socket)}
	sb, err := totp.DecodeSecret(secret)
	if err != nil {
		b.Fatal(err)
	}
	code, err := totp.Code(sb, time.Now(), totp.DefaultParams)
	if err != nil {
		b.Fatal(err)
	}
	cdir := filepath.Join(dir, "client")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := client.Login(ctx, client.LoginOptions{Gate: addr, TrustFirstUse: true, User: "bench", Password: "correct horse battery", Code: code, Dir: cdir}); err != nil {
		b.Fatalf("login to the bench gate: %v", err)
	}
	if g.session, err = client.Open(cdir); err != nil {
		b.Fatal(err)
	}
	return g
}

// swtpmProc finds the swtpm process serving socket, to read its CPU time
// (the TPM signs the gate's TLS handshakes and log checkpoints).
func swtpmProc(b *testing.B, socket string) *benchProc {
	b.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		b.Fatal(err)
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cl, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			continue
		}
		args := strings.Split(string(cl), "\x00")
		if filepath.Base(args[0]) == "swtpm" && strings.Contains(string(cl), socket) {
			return &benchProc{name: "swtpm", pid: pid}
		}
	}
	b.Fatalf("no swtpm process serving %s", socket)
	return nil
}

// tunnel opens one session through the gate: a TLS 1.3 mutual stream
// naming plc-1/modbus, as each connection of `otgate connect` does.
func (g *modbusBenchGate) tunnel(ctx context.Context) (net.Conn, error) {
	c, _, err := g.session.Tunnel(ctx, "plc-1", "modbus")
	if err != nil {
		return nil, err
	}
	return c, nil
}

// startForwarder runs client.Forwarder (the engine of `otgate connect`) on
// a loopback port in this process and returns its address.
func (g *modbusBenchGate) startForwarder(b *testing.B) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	f := &client.Forwarder{Session: g.session, Asset: "plc-1", Protocol: "modbus"}
	go func() { f.Serve(ctx, ln); close(done) }()
	b.Cleanup(func() { cancel(); <-done })
	return ln.Addr().String()
}

// haproxyConfig relays TCP to the plant: no inspection, no log, no TLS.
// The listening socket is inherited as fd 3 (no port race).
const haproxyConfig = `global
	maxconn 4096
defaults
	mode tcp
	timeout connect 5s
	timeout client 5m
	timeout server 5m
frontend modbus
	bind fd@3
	default_backend plant
backend plant
	server plant %s
`

// startHAProxy runs haproxy in the foreground (-db) as a plain TCP relay
// to plantAddr and returns it and its address.
func startHAProxy(b *testing.B, plantAddr string) (*benchProc, string) {
	b.Helper()
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		b.Skip("haproxy not installed (apt-get install haproxy): skipping the Modbus relay comparison")
	}
	dir := b.TempDir()
	cfg := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(haproxyConfig, plantAddr)), 0o600); err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	lf, err := ln.(*net.TCPListener).File()
	if err != nil {
		b.Fatal(err)
	}
	ln.Close() // lf is a dup: the socket stays open for haproxy
	defer lf.Close()
	logPath := filepath.Join(dir, "haproxy.log")
	logf, err := os.Create(logPath)
	if err != nil {
		b.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(bin, "-f", cfg, "-db")
	cmd.ExtraFiles = []*os.File{lf}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		b.Fatalf("start haproxy: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	p := &benchProc{name: "haproxy", pid: cmd.Process.Pid, cmd: cmd}
	b.Cleanup(func() {
		select {
		case <-exited:
		default:
			cmd.Process.Kill()
			<-exited
		}
	})
	laddr := ln.Addr().String()
	// haproxy accepts on the inherited socket once it is up: a Modbus
	// transaction answered through it says so.
	deadline := time.Now().Add(30 * time.Second)
	for {
		var err error
		select {
		case <-exited:
			err = fmt.Errorf("haproxy exited: %v", cmd.ProcessState)
		default:
			var c net.Conn
			if c, err = net.DialTimeout("tcp", laddr, time.Second); err == nil {
				c.SetDeadline(time.Now().Add(2 * time.Second))
				err = newModbusConn(c).transact(0)
				c.Close()
				if err == nil {
					return p, laddr
				}
			}
		}
		gone := false
		select {
		case <-exited:
			gone = true
		default:
		}
		if gone || time.Now().After(deadline) {
			out, _ := os.ReadFile(logPath)
			b.Fatalf("haproxy relay at %s not answering: %v\nhaproxy output:\n%s", laddr, err, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
