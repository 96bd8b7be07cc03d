package proxy

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/otgate/otgate/client"
	"github.com/otgate/otgate/services/identity/api"
	"github.com/otgate/otgate/services/proxy/auth/totp"
	"github.com/otgate/otgate/site"
)

// The benchmarks run the gate and the echo asset in child processes (this
// test binary re-executed with benchGateEnv or benchEchoEnv set), so that
// the gate's memory and CPU are its own and the direct path, like every
// real client-to-device path, crosses from one process to another: with
// the echo in the parent, the client's write and the echo's read ran on
// one Go scheduler without a wake-up, which no network path has, and the
// "added" latency charged the gate for the cross-process wake-ups of
// this 2-CPU VM. The parent holds the clients.
const (
	benchGateEnv = "OTGATE_BENCH_GATE_ECHO"
	benchEchoEnv = "OTGATE_BENCH_ECHO"
)

func TestMain(m *testing.M) {
	if os.Getenv(benchEchoEnv) != "" {
		if err := runBenchEcho(); err != nil {
			fmt.Fprintln(os.Stderr, "bench echo:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if echo := os.Getenv(benchGateEnv); echo != "" {
		if err := runBenchGate(echo); err != nil {
			fmt.Fprintln(os.Stderr, "bench gate:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// memSealer keeps sealed secrets in memory: the benchmark gate has no TPM
// (the identity service is not what is measured).
type memSealer struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (s *memSealer) Seal(name string, data []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[name] = append([]byte(nil), data...)
	return nil
}

func (s *memSealer) Unseal(name string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if b, ok := s.m[name]; ok {
		return b, nil
	}
	return nil, &api.Error{Op: "unseal", Code: api.CodeNotFound, Msg: name}
}

func softwareDevice() (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bench gate"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	leaf, _ := x509.ParseCertificate(der)
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

const benchSite = `site: bench
zones:
  - name: cell
    owner: ot@lab.example
    mode: enforce
    interface: eth1
    subnet: 10.99.0.0/24
    gate_address: 10.99.0.1
assets:
  - name: echo-1
    zone: cell
    address: 10.99.0.2
    services:
      - protocol: tcp
        port: 7
`

// runBenchGate is the child: a full gate (user store, CA, audit log with
// payload records) whose asset dial goes to the parent's echo server on
// loopback. It prints "ADDR SECRET", then answers "mem" lines on stdin
// with its memory after a GC.
func runBenchGate(echo string) error {
	dir, err := os.MkdirTemp("", "otgate-bench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	dev, err := softwareDevice()
	if err != nil {
		return err
	}
	srv, closeAll, err := childGate{Dir: dir, Device: dev, Sealer: &memSealer{m: map[string][]byte{}}, SiteYAML: benchSite,
		Decider: func(s *site.Site, _ string) *Policy {
			return &Policy{Site: s, Decider: grantTable{{rule: "bench", user: "bench", asset: "echo-1", protocol: "tcp"}}}
		},
		AssetAddr: echo}.serve()
	if err != nil {
		return err
	}
	defer closeAll()
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		if sc.Text() != "mem" {
			continue
		}
		runtime.GC()
		debug.FreeOSMemory()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		fmt.Printf("%d %d %d %d\n", rssBytes(os.Getpid()), ms.HeapInuse, ms.StackInuse, srv.reg.count())
	}
	return nil
}

// runBenchEcho is the echo asset's child: it echoes every connection on a
// loopback port, prints the address and serves until its standard input
// closes. It reads and writes like a device answering requests, not with
// io.Copy: between two TCP sockets that is splice(2) through a pipe, a
// kernel path no PLC's network stack takes (it made every path through
// a relay 10-25 us slower at p50 here).
func runBenchEcho() error {
	return serveChild(func(l net.Listener) {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go echoLikeADevice(c)
		}
	})
}

// echoLikeADevice answers each read with the same bytes until c closes.
func echoLikeADevice(c net.Conn) {
	defer c.Close()
	buf := make([]byte, 64<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// serveChild is a benchmark child's life: serve on a loopback port,
// print its address for the parent, and stop when standard input closes.
func serveChild(serve func(net.Listener)) error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go serve(l)
	fmt.Println(l.Addr())
	io.Copy(io.Discard, os.Stdin)
	return l.Close()
}

func rssBytes(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			var kb int64
			fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(l, "VmRSS:")), "%d", &kb)
			return kb << 10
		}
	}
	return -1
}

// benchGate is the parent's view of the child gate.
type benchGate struct {
	echo    string
	session *client.Session
	cmd     *exec.Cmd
	in      io.WriteCloser
	out     *bufio.Reader
}

func startBenchGate(b *testing.B) *benchGate {
	b.Helper()
	_, echo := startChild(b, "echo", benchEchoEnv+"=1")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), benchGateEnv+"="+echo)
	cmd.Stderr = os.Stderr
	in, _ := cmd.StdinPipe()
	outPipe, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { in.Close(); cmd.Process.Kill(); cmd.Wait() })
	g := &benchGate{echo: echo, cmd: cmd, in: in, out: bufio.NewReader(outPipe)}
	line, err := g.out.ReadString('\n')
	if err != nil {
		b.Fatalf("bench gate did not start: %v", err)
	}
	var addr, secret string
	fmt.Sscan(line, &addr, &secret)
	sb, _ := totp.DecodeSecret(secret)
	code, _ := totp.Code(sb, time.Now(), totp.DefaultParams)
	dir := b.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := client.Login(ctx, client.LoginOptions{Gate: addr, TrustFirstUse: true, User: "bench", Password: "correct horse battery", Code: code, Dir: dir}); err != nil {
		b.Fatalf("login to the bench gate: %v", err)
	}
	if g.session, err = client.Open(dir); err != nil {
		b.Fatal(err)
	}
	return g
}

// mem asks the child for RSS, heap in use, stack in use and live sessions.
func (g *benchGate) mem(b *testing.B) (rss, heap, stack, sessions int64) {
	b.Helper()
	fmt.Fprintln(g.in, "mem")
	line, err := g.out.ReadString('\n')
	if err != nil {
		b.Fatal(err)
	}
	fmt.Sscan(line, &rss, &heap, &stack, &sessions)
	return
}

func (g *benchGate) dial(b *testing.B, viaGate bool) net.Conn {
	b.Helper()
	if !viaGate {
		c, err := net.Dial("tcp", g.echo)
		if err != nil {
			b.Fatal(err)
		}
		return c
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, _, err := g.session.Tunnel(ctx, "echo-1", "tcp")
	if err != nil {
		b.Fatal(err)
	}
	return c
}
