package timesync

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/beevik/ntp"
	"github.com/vishvananda/netns"
)

// The host tests talk to real NTP servers: chrony's chronyd, each in a
// private network namespace (nothing reaches the host's network), with
// its own configuration, run with -x so that it never touches any clock.
// The service under test corrects an injected clock (testClock), never
// the host's.

// lab is a private network namespace with chronyd servers on addresses
// of its loopback interface (192.0.2.2, ...: TEST-NET-1, as a site file
// may name them), and a dialer that opens the queries' sockets inside
// it.
type lab struct {
	pid int
	ns  netns.NsHandle
	dir string
}

func newLab(t *testing.T) *lab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces)")
	}
	for _, b := range []string{"chronyd", "unshare", "nsenter", "ip"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("%s not installed (make test installs chrony)", b)
		}
	}
	cmd := exec.Command("unshare", "--net", "sleep", "3600")
	if err := cmd.Start(); err != nil {
		t.Fatalf("namespace holder: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	self, _ := os.Readlink("/proc/self/ns/net")
	for i := 0; ; i++ {
		ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", cmd.Process.Pid))
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", cmd.Process.Pid))
		if err == nil && ns != self && strings.TrimSpace(string(comm)) == "sleep" {
			break
		}
		if i > 3000 {
			t.Fatal("namespace holder did not start within 30s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	ns, err := netns.GetFromPid(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	l := &lab{pid: cmd.Process.Pid, ns: ns, dir: t.TempDir()}
	l.run(t, "ip", "link", "set", "lo", "up")
	return l
}

func (l *lab) run(t *testing.T, args ...string) {
	t.Helper()
	full := append([]string{"--net=/proc/" + strconv.Itoa(l.pid) + "/ns/net"}, args...)
	if out, err := exec.Command("nsenter", full...).CombinedOutput(); err != nil {
		t.Fatalf("nsenter %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// addr puts addr/32 on the lab's loopback interface.
func (l *lab) addr(t *testing.T, addr string) {
	t.Helper()
	l.run(t, "ip", "addr", "add", addr+"/32", "dev", "lo")
}

// dial opens a query's UDP socket inside the lab (the socket keeps its
// namespace; the thread that made it is discarded).
func (l *lab) dial(laddr, raddr string) (net.Conn, error) {
	return l.inNS(func() (net.Conn, error) {
		ra, err := net.ResolveUDPAddr("udp", raddr)
		if err != nil {
			return nil, err
		}
		return net.DialUDP("udp", nil, ra)
	})
}

// inNS runs open on a thread in the lab's network namespace and returns
// what it opened (a socket keeps its namespace; the thread is discarded).
func (l *lab) inNS(open func() (net.Conn, error)) (net.Conn, error) {
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		if err := netns.Set(l.ns); err != nil {
			ch <- res{nil, fmt.Errorf("setns: %w", err)}
			return
		}
		c, err := open()
		ch <- res{c, err}
	}()
	r := <-ch
	return r.c, r.err
}

// chronyd starts a chronyd serving NTP on addr (port 123) inside the
// lab. extra is appended to its configuration: "local stratum 3" makes
// it a synchronised server; without a "local" line it answers as a
// server that lost its sources (chrony 4.3: stratum 0, leap indicator
// 3, not synchronised).
// -x: it never sets a clock. It returns a function that stops it.
func (l *lab) chronyd(t *testing.T, addr string, extra ...string) (stop func()) {
	t.Helper()
	l.addr(t, addr)
	return l.chronydIn(t, addr, "chrony-"+addr, extra...)
}

// chronydIn starts chronyd as chronyd does on an address the lab has
// already, with its files in the lab's directory name (a second one on
// the same address, after the first stopped, needs another).
func (l *lab) chronydIn(t *testing.T, addr, name string, extra ...string) (stop func()) {
	t.Helper()
	dir := filepath.Join(l.dir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	conf := strings.Join(append([]string{
		"pidfile " + filepath.Join(dir, "chronyd.pid"),
		"bindcmdaddress /", // no command socket (not the host's /run/chrony)
		"cmdport 0",
		"port 123",
		"bindaddress " + addr,
		"allow all",
	}, extra...), "\n") + "\n"
	cf := filepath.Join(dir, "chrony.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	log, err := os.Create(filepath.Join(dir, "log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("nsenter", "--net=/proc/"+strconv.Itoa(l.pid)+"/ns/net",
		"chronyd", "-x", "-d", "-u", "root", "-f", cf)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatalf("chronyd: %v", err)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cmd.Process.Kill()
			cmd.Wait()
			log.Close()
		})
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "log"))
			t.Logf("chronyd %s log:\n%s", addr, b)
		}
	})
	// Serving once it answers.
	for i := 0; ; i++ {
		_, err := ntp.QueryWithOptions(addr, ntp.QueryOptions{Timeout: 200 * time.Millisecond, Dialer: l.dial})
		if err == nil {
			return stop
		}
		if i > 50 {
			b, _ := os.ReadFile(filepath.Join(dir, "log"))
			t.Fatalf("chronyd on %s does not answer: %v\n%s", addr, err, b)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// testClock is the clock the service corrects in tests: the host's time
// plus a skew that Step changes. Slews are only recorded (the kernel
// would carry them out over minutes).
type testClock struct {
	mu    sync.Mutex
	skew  time.Duration
	steps []time.Duration
	slews []time.Duration
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.skew)
}

func (c *testClock) Step(d time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.skew += d
	c.steps = append(c.steps, d)
	return nil
}

func (c *testClock) Slew(d, _ time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.slews = append(c.slews, d)
	return nil
}

func (c *testClock) set(skew time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.skew = skew
}

func (c *testClock) counts() (int, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.steps), len(c.slews)
}

// logs collects a service's log lines and status notes.
type logs struct {
	mu     sync.Mutex
	lines  []string
	status []string
}

// newLogs returns an empty logs whose lines are logged if t fails.
func newLogs(t *testing.T) *logs {
	lg := &logs{}
	t.Cleanup(func() {
		if t.Failed() {
			lg.dump(t)
		}
	})
	return lg
}

func (l *logs) logf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
}

func (l *logs) note(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.status = append(l.status, s)
}

func (l *logs) count(sub string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, s := range l.lines {
		if strings.Contains(s, sub) {
			n++
		}
	}
	return n
}

func (l *logs) match(re string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := regexp.MustCompile(re)
	n := 0
	for _, s := range l.lines {
		if r.MatchString(s) {
			n++
		}
	}
	return n
}

func (l *logs) lastStatus() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.status) == 0 {
		return ""
	}
	return l.status[len(l.status)-1]
}

func (l *logs) dump(t *testing.T) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.lines {
		t.Log(s)
	}
}

// near says whether d is within tol of want.
func near(d, want, tol time.Duration) bool { return absDur(d-want) <= tol }
