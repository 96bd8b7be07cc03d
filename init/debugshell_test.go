package main

import (
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/otgate/otgate/internal/ptytest"
)

// openPTY returns a pseudo-terminal's master and the path of its slave.
func openPTY(t *testing.T) (*os.File, string) { return ptytest.Open(t) }

// ptyOutput collects what the terminal shows.
type ptyOutput struct {
	mu  sync.Mutex
	buf strings.Builder
}

func readPTY(master *os.File) *ptyOutput {
	o := &ptyOutput{}
	go func() {
		b := make([]byte, 4096)
		for {
			n, err := master.Read(b)
			o.mu.Lock()
			o.buf.Write(b[:n])
			o.mu.Unlock()
			if err != nil {
				// EIO while no shell holds the slave open: keep reading
				// until the test closes the master.
				if strings.Contains(err.Error(), "file already closed") {
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	}()
	return o
}

func (o *ptyOutput) wait(t *testing.T, re *regexp.Regexp) []string {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for time.Now().Before(deadline) {
		o.mu.Lock()
		m := re.FindStringSubmatch(o.buf.String())
		o.mu.Unlock()
		if m != nil {
			return m
		}
		time.Sleep(20 * time.Millisecond)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	t.Fatalf("the console never showed %v; it shows:\n%s", re, o.buf.String())
	return nil
}

// The debug image's console shell: a real shell on a real terminal that
// is its controlling terminal (its own session), started again after it
// exits, and killed by stop.
func TestConsoleShell(t *testing.T) {
	sh, err := lookPath("sh")
	if err != nil {
		t.Skip(err)
	}
	master, slave := openPTY(t)
	out := readPTY(master)
	log := newLogger(newTestWriter(t))
	r := newReaper(log, false)
	r.run()
	t.Cleanup(r.stop)
	c := newConsoleShell(log, r, sh, slave)
	c.delayMin = 100 * time.Millisecond
	c.run()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			c.stop()
		}
	})
	waitLine(t, log, "init: DEBUG IMAGE: shell "+sh+" on "+slave)

	// The terminal echoes the input: only the shell's answer says 42.
	fmt.Fprintf(master, "echo \"ctty $$ $(cut -d' ' -f6,7 /proc/$$/stat) $((6*7))\"\n")
	m := out.wait(t, regexp.MustCompile(`ctty (\d+) (\d+) (\d+) 42`))
	pid, _ := strconv.Atoi(m[1])
	var st unix.Stat_t
	if err := unix.Stat(slave, &st); err != nil {
		t.Fatal(err)
	}
	// tty_nr in /proc/<pid>/stat: minor bits 0-7 and 20-31, major 8-19.
	maj, mnr := unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev))
	wantTTY := strconv.FormatUint(uint64(mnr&0xff|maj<<8|(mnr&^0xff)<<12), 10)
	if m[2] != m[1] || m[3] != wantTTY {
		t.Fatalf("shell pid %s: session %s, controlling tty %s; want its own session and tty %s (%s)", m[1], m[2], m[3], wantTTY, slave)
	}

	// exit: a new shell comes up on the same console.
	fmt.Fprintf(master, "exit\n")
	waitLine(t, log, "init: debug shell exited (status 0); a new one in 100ms")
	deadline := time.Now().Add(waitTimeout)
	for unix.Kill(pid, 0) == nil && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	var pid2 int
	for pid2 == 0 && time.Now().Before(deadline) {
		fmt.Fprintf(master, "echo \"again $$ $((1+1))\"\n")
		time.Sleep(300 * time.Millisecond)
		out.mu.Lock()
		if m := regexp.MustCompile(`again (\d+) 2`).FindStringSubmatch(out.buf.String()); m != nil {
			pid2, _ = strconv.Atoi(m[1])
		}
		out.mu.Unlock()
	}
	if pid2 == 0 || pid2 == pid {
		t.Fatalf("no new shell after exit (first pid %d, then %d)", pid, pid2)
	}

	// stop kills the running shell and ends the loop: no third shell.
	c.stop()
	stopped = true
	if err := unix.Kill(pid2, 0); err != unix.ESRCH {
		t.Fatalf("shell %d still there after stop: %v", pid2, err)
	}
	n := len(log.Lines())
	time.Sleep(500 * time.Millisecond)
	for _, l := range log.Lines()[n:] {
		t.Errorf("after stop: %s", l)
	}
}

func TestConsoleDevice(t *testing.T) {
	for _, tc := range []struct {
		board, cmdline, want string
	}{
		{"ttyS0", "console=tty0 console=ttyAMA0", "/dev/ttyS0"},
		{"", "quiet console=tty0 console=ttyAMA0,115200n8", "/dev/ttyAMA0"},
		{"", "quiet", ""},
	} {
		if got := consoleDevice(tc.board, parseCmdline(tc.cmdline)); got != tc.want {
			t.Errorf("consoleDevice(%q, %q) = %q, want %q", tc.board, tc.cmdline, got, tc.want)
		}
	}
}
