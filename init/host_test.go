package main

import (
	"bufio"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/otgate/otgate/internal/bootcfg"
	"github.com/otgate/otgate/internal/initstatus"
)

// hostInit is the init binary running on this host (not PID 1) below a
// temporary root.
type hostInit struct {
	root string
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  []string
	done chan struct{}
}

func runHostInit(t *testing.T, root, cmdline string) *hostInit {
	t.Helper()
	return runHostInitCmd(t, root, exec.Command(initBin, "-root", root, "-cmdline", cmdline))
}

// runHostInitCmd runs init as cmd (e.g. wrapped in unshare).
func runHostInitCmd(t *testing.T, root string, cmd *exec.Cmd) *hostInit {
	t.Helper()
	h := &hostInit{root: root, done: make(chan struct{}), cmd: cmd}
	stderr, err := h.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := h.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(h.done)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			h.mu.Lock()
			h.out = append(h.out, sc.Text())
			h.mu.Unlock()
			t.Log(sc.Text())
		}
	}()
	t.Cleanup(func() {
		h.cmd.Process.Signal(syscall.SIGUSR2)
		select {
		case <-h.done:
		case <-time.After(30 * time.Second):
			h.cmd.Process.Kill()
		}
		h.cmd.Wait()
	})
	return h
}

func (h *hostInit) lines() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.out...)
}

func (h *hostInit) wait(t *testing.T, prefix string) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for time.Now().Before(deadline) {
		if lineIndex(h.lines(), prefix) >= 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("init printed no line %q within %s", prefix, waitTimeout)
}

// dial connects to the status socket, which appears a moment after the
// config is read.
func (h *hostInit) dial(t *testing.T) *initstatus.Client {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		c, err := initstatus.Dial(h.socket())
		if err == nil {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (h *hostInit) socket() string { return filepath.Join(h.root, bootcfg.StatusSocket) }

func TestHostInitStatusSocketAndShutdown(t *testing.T) {
	core := svc("core", bootcfg.ReadyNotify, "-mode=steady")
	core.Critical = true
	reporter := svc("reporter", bootcfg.ReadyExit, "-mode=status", "-socket=PLACEHOLDER")
	reporter.DependsOn = []string{"core"}
	cfg := &bootcfg.Config{Hostname: "gate-test", Board: "host", ImageID: "0123456789abcdef0123", Services: []bootcfg.Service{core, reporter}}
	root := t.TempDir()
	cfg.Services[1].Args[1] = "-socket=" + filepath.Join(root, bootcfg.StatusSocket)
	b, _ := bootcfg.Marshal(cfg)
	os.MkdirAll(filepath.Join(root, "etc/otgate"), 0o755)
	if err := os.WriteFile(filepath.Join(root, bootcfg.Path), b, 0o644); err != nil {
		t.Fatal(err)
	}
	h := runHostInit(t, root, "")
	h.wait(t, "init: ready (2 services, ")
	h.wait(t, "init: reporter done (")

	fi, err := os.Stat(h.socket())
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("status socket: %v, mode %v; want a 0600 socket", err, fi.Mode())
	}
	c, err := initstatus.Dial(h.socket())
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.Status()
	if err != nil {
		t.Fatal(err)
	}
	if st.InitRSS == 0 {
		t.Errorf("status: no init RSS")
	}
	if !st.Ready || st.Hostname != "gate-test" || st.ImageID != cfg.ImageID || st.Perm.FSType != "host-dir" || st.Perm.Boots != 1 {
		t.Errorf("status header %+v", st)
	}
	if len(st.Services) != 2 || st.Services[0].Name != "core" || st.Services[0].State != initstatus.StateReady || st.Services[0].PID <= 0 ||
		st.Services[1].Name != "reporter" || st.Services[1].State != initstatus.StateDone {
		t.Errorf("services %+v", st.Services)
	}
	// The reporter printed the same table through init's log.
	if lineIndex(h.lines(), "reporter: testsvc: status") < 0 || lineIndex(h.lines(), "reporter: core*") < 0 {
		t.Errorf("reporter output missing from the console")
	}
	logLines, err := c.Log()
	if err != nil {
		t.Fatal(err)
	}
	if lineIndex(logLines, "init: ready (") < 0 {
		t.Errorf("log op: no ready line in %d lines", len(logLines))
	}
	if b, err := os.ReadFile(filepath.Join(h.root, "run/otgate/init.log")); err != nil || !strings.Contains(string(b), "init: ready (") {
		t.Errorf("run/otgate/init.log: %v, has ready line: %v", err, strings.Contains(string(b), "init: ready ("))
	}

	// An unknown op gets an error that names it, not a status.
	conn, err := net.Dial("unix", h.socket())
	if err != nil {
		t.Fatal(err)
	}
	initstatus.EncMode().NewEncoder(conn).Encode(initstatus.Request{Op: "reboot"})
	var resp initstatus.Response
	if err := initstatus.DecMode().NewDecoder(conn).Decode(&resp); err != nil || resp.Status != nil || !strings.Contains(resp.Error, `unknown op "reboot"`) {
		t.Errorf("unknown op: %+v, %v", resp, err)
	}
	conn.Close()

	// SIGUSR2: power off (outside PID 1: stop and exit 0).
	h.cmd.Process.Signal(syscall.SIGUSR2)
	<-h.done
	if err := h.cmd.Wait(); err != nil {
		t.Fatalf("init exit: %v", err)
	}
	for _, want := range []string{"init: shutting down (power off)", "init: stopping core", "init: core stopped (", "init: powering off"} {
		if lineIndex(h.lines(), want) < 0 {
			t.Errorf("no line %q", want)
		}
	}

	// Second boot below the same root counts boot 2.
	h2 := runHostInit(t, root, "")
	h2.wait(t, "init: ready (")
	h2.wait(t, "init: /perm is "+filepath.Join(root, "perm")+" (development host, boot 2)")
}

func TestHostInitWatchdogTestHook(t *testing.T) {
	core := svc("core", bootcfg.ReadyNotify, "-mode=steady")
	core.Critical = true
	cfg := &bootcfg.Config{TestHooks: true, Services: []bootcfg.Service{core},
		Watchdog: bootcfg.Watchdog{Device: "/dev/watchdog", Timeout: 600 * time.Millisecond}}
	root := t.TempDir()
	b, _ := bootcfg.Marshal(cfg)
	os.MkdirAll(filepath.Join(root, "etc/otgate"), 0o755)
	os.WriteFile(filepath.Join(root, bootcfg.Path), b, 0o644)
	pets := fifoWatchdog(t, root)

	h := runHostInit(t, root, "otgate.test.stop_watchdog=1 quiet")
	h.wait(t, "init: test hook: watchdog petting stopped")
	// Init pets once as the watchdog starts, before any service is ready.
	before := pets.settled(t, "no pets before the test hook")
	time.Sleep(4 * 200 * time.Millisecond) // four petting intervals
	if after := pets.count(); after != before {
		t.Fatalf("%d pets after the test hook stopped petting", after-before)
	}
	h.cmd.Process.Signal(syscall.SIGUSR2)
	<-h.done
	h.cmd.Wait()
	// The reader goroutine drains the FIFO on its own schedule: give it
	// time to see the last byte init wrote before it exited.
	deadline := time.Now().Add(waitTimeout)
	for !pets.sawMagicClose() {
		if time.Now().After(deadline) {
			t.Fatalf("no magic close 'V' at shutdown")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// fifoWatchdog makes root's /dev/watchdog a FIFO (init outside PID 1
// writes to it like a watchdog device) and counts what init writes.
func fifoWatchdog(t *testing.T, root string) *petCounter {
	t.Helper()
	os.MkdirAll(filepath.Join(root, "dev"), 0o755)
	fifo := filepath.Join(root, "dev/watchdog")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := os.OpenFile(fifo, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return newPetCounter(r)
}

// petCounter counts the bytes written to a watchdog stand-in.
type petCounter struct {
	mu    sync.Mutex
	bytes []byte
}

func newPetCounter(r io.Reader) *petCounter {
	p := &petCounter{}
	go func() {
		buf := make([]byte, 64)
		for {
			n, err := r.Read(buf)
			p.mu.Lock()
			p.bytes = append(p.bytes, buf[:n]...)
			p.mu.Unlock()
			if err != nil && err != syscall.EAGAIN && !os.IsTimeout(err) {
				if err == io.EOF {
					time.Sleep(10 * time.Millisecond)
					continue
				}
				return
			}
		}
	}()
	return p
}

func (p *petCounter) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, b := range p.bytes {
		if b != 'V' {
			n++
		}
	}
	return n
}

// settled waits until at least one pet has been read, lets the reader
// drain what was written before the caller's log line (the reader sees the
// bytes on its own schedule, the line can come first) and returns the
// count. A pet within those 50 ms after the line is counted here, not
// later: waiting can hide one pet, never the petting that goes on every
// interval (200 ms in these tests, and they watch four). It fails the
// test with msg when no pet comes.
func (p *petCounter) settled(t *testing.T, msg string) int {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for p.count() == 0 {
		if time.Now().After(deadline) {
			t.Fatal(msg)
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	return p.count()
}

func (p *petCounter) sawMagicClose() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.bytes) > 0 && p.bytes[len(p.bytes)-1] == 'V'
}

// An orphan (a grandchild whose parent exited) is reaped by init and
// logged; the supervised service is not disturbed.
func TestHostInitReapsOrphans(t *testing.T) {
	sh, err := lookPath("sh")
	if err != nil {
		t.Skip(err)
	}
	s := bootcfg.Service{Name: "parent", Binary: sh, Readiness: bootcfg.ReadyNotify, Critical: true,
		Args: []string{"-c", "(sleep 0.3 &); exec " + testsvcBin + " -mode=steady"}}
	h := runHostInit(t, writeRoot(t, &bootcfg.Config{Services: []bootcfg.Service{s}}), "")
	h.wait(t, "init: ready (")
	h.wait(t, "init: reaped orphan ")
	if i := lineIndex(h.lines(), "init: reaped orphan "); !strings.HasSuffix(h.lines()[i], "(status 0)") {
		t.Fatalf("orphan line %q", h.lines()[i])
	}
	c, err := initstatus.Dial(h.socket())
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.Status()
	if err != nil || st.Services[0].State != initstatus.StateReady || st.Services[0].Restarts != 0 {
		t.Fatalf("parent after the orphan exited: %+v, %v", st, err)
	}
}

// Bad boot configs: init names the cause, runs nothing and never says
// ready, but keeps answering and shuts down cleanly.
func TestHostInitBadConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  *bootcfg.Config
		want string
	}{
		{"missing binary", &bootcfg.Config{Services: []bootcfg.Service{{Name: "ghost", Binary: "/nonexistent/ghost", Readiness: bootcfg.ReadyStarted}}},
			`service "ghost": unknown binary "/nonexistent/ghost": not in the image`},
		{"cycle", &bootcfg.Config{Services: []bootcfg.Service{
			{Name: "a", Binary: testsvcBin, Readiness: bootcfg.ReadyStarted, DependsOn: []string{"b"}},
			{Name: "b", Binary: testsvcBin, Readiness: bootcfg.ReadyStarted, DependsOn: []string{"a"}}}},
			"dependency cycle: a -> b -> a"},
		// Durations init adds up are bounded at load: a stop grace this
		// big wrapped the shutdown budget negative.
		{"stop grace", &bootcfg.Config{StopGrace: 1 << 62, Services: []bootcfg.Service{{Name: "a", Binary: testsvcBin, Readiness: bootcfg.ReadyStarted}}},
			"stop grace " + time.Duration(1<<62).String() + " is outside 0 to 10m0s"},
		{"negative stop grace", &bootcfg.Config{StopGrace: -time.Second, Services: []bootcfg.Service{{Name: "a", Binary: testsvcBin, Readiness: bootcfg.ReadyStarted}}},
			"stop grace -1s is outside 0 to 10m0s"},
		{"readiness timeout", &bootcfg.Config{Services: []bootcfg.Service{{Name: "a", Binary: testsvcBin, Readiness: bootcfg.ReadyNotify, Timeout: 1 << 62}}},
			`service "a": readiness timeout ` + time.Duration(1<<62).String() + " is outside 0 to 1h0m0s"},
		// Numbers that turned a safety off without a word: a negative
		// or zero crash-loop window never held a restart, a limit of 0
		// or less never counted, a huge one is never reached.
		{"negative crash loop window", &bootcfg.Config{CrashLoop: bootcfg.CrashLoop{Restarts: 5, Window: -30 * time.Second}, Services: []bootcfg.Service{{Name: "a", Binary: testsvcBin, Readiness: bootcfg.ReadyStarted}}},
			"crash loop window -30s is outside 1s to 24h0m0s"},
		{"crash loop window 0", &bootcfg.Config{CrashLoop: bootcfg.CrashLoop{Restarts: 5}, Services: []bootcfg.Service{{Name: "a", Binary: testsvcBin, Readiness: bootcfg.ReadyStarted}}},
			"crash loop window 0s is outside 1s to 24h0m0s"},
		{"crash loop window too short", &bootcfg.Config{CrashLoop: bootcfg.CrashLoop{Restarts: 5, Window: time.Millisecond}, Services: []bootcfg.Service{{Name: "a", Binary: testsvcBin, Readiness: bootcfg.ReadyStarted}}},
			"crash loop window 1ms is outside 1s to 24h0m0s"},
		{"negative crash loop restarts", &bootcfg.Config{CrashLoop: bootcfg.CrashLoop{Restarts: -1, Window: 30 * time.Second}, Services: []bootcfg.Service{{Name: "a", Binary: testsvcBin, Readiness: bootcfg.ReadyStarted}}},
			"crash loop restarts -1 is outside 1 to 100"},
		{"crash loop restarts 0", &bootcfg.Config{CrashLoop: bootcfg.CrashLoop{Window: 30 * time.Second}, Services: []bootcfg.Service{{Name: "a", Binary: testsvcBin, Readiness: bootcfg.ReadyStarted}}},
			"crash loop restarts 0 is outside 1 to 100"},
		{"huge crash loop restarts", &bootcfg.Config{CrashLoop: bootcfg.CrashLoop{Restarts: 1 << 40, Window: 30 * time.Second}, Services: []bootcfg.Service{{Name: "a", Binary: testsvcBin, Readiness: bootcfg.ReadyStarted}}},
			"crash loop restarts 1099511627776 is outside 1 to 100"},
		// A watchdog timeout too short to pet (before: refused with the
		// default used, 2 ns made the petting loop panic), negative
		// (before: the default, silently) or absurdly long.
		{"watchdog timeout 2ns", &bootcfg.Config{Watchdog: bootcfg.Watchdog{Device: "/dev/watchdog", Timeout: 2}, Services: []bootcfg.Service{{Name: "a", Binary: testsvcBin, Readiness: bootcfg.ReadyStarted}}},
			"watchdog timeout 2ns is outside 100ms to 10m0s (0: init's default)"},
		{"negative watchdog timeout", &bootcfg.Config{Watchdog: bootcfg.Watchdog{Device: "/dev/watchdog", Timeout: -time.Second}, Services: []bootcfg.Service{{Name: "a", Binary: testsvcBin, Readiness: bootcfg.ReadyStarted}}},
			"watchdog timeout -1s is outside 100ms to 10m0s"},
		{"huge watchdog timeout", &bootcfg.Config{Watchdog: bootcfg.Watchdog{Device: "/dev/watchdog", Timeout: 1 << 62}, Services: []bootcfg.Service{{Name: "a", Binary: testsvcBin, Readiness: bootcfg.ReadyStarted}}},
			"watchdog timeout " + time.Duration(1<<62).String() + " is outside 100ms to 10m0s"},
		// (uid_t)-1 is no id ("unchanged" to setresuid: root).
		{"uid -1", &bootcfg.Config{Services: []bootcfg.Service{{Name: "a", Binary: testsvcBin, Readiness: bootcfg.ReadyStarted, UID: 1<<32 - 1, GID: 1<<32 - 1}}},
			`service "a": uid 4294967295, gid 4294967295: 4294967295 is (uid_t)-1, not an id`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := runHostInit(t, writeRoot(t, tc.cfg), "")
			h.wait(t, "init: CONFIG ERROR: running no services")
			if i := lineIndex(h.lines(), "init: CONFIG ERROR: "); !strings.Contains(h.lines()[i], tc.want) {
				t.Fatalf("error line %q lacks %q", h.lines()[i], tc.want)
			}
			c := h.dial(t)
			if st, err := c.Status(); err != nil || st.Ready || len(st.Services) != 0 || !strings.Contains(st.ConfigError, tc.want) {
				t.Fatalf("status %+v, %v; want not ready, no services", st, err)
			}
			if lineIndex(h.lines(), "init: ready") >= 0 {
				t.Fatal("init said ready with a bad config")
			}
			h.cmd.Process.Signal(syscall.SIGTERM)
			<-h.done
			if err := h.cmd.Wait(); err != nil || lineIndex(h.lines(), "init: rebooting") < 0 {
				t.Fatalf("shutdown: %v", err)
			}
		})
	}
}

func writeRoot(t *testing.T, cfg *bootcfg.Config) string {
	t.Helper()
	root := t.TempDir()
	b, err := bootcfg.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(root, "etc/otgate"), 0o755)
	if err := os.WriteFile(filepath.Join(root, bootcfg.Path), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}
