package main

import (
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

// A console that stops taking output (a serial console stopped with
// ctrl-S, flow control with no cable; here a stderr pipe nobody reads)
// does not stop init: a service's output fills it, and still the service
// gets ready, a crash of it is seen and restarted (a stale "ready" would
// have kept the watchdog petted), the log op answers, and a power-off
// request powers off. The lines the console did not take are in the ring
// and in init.log.
func TestHostInitBlockedConsole(t *testing.T) {
	sh, err := lookPath("sh")
	if err != nil {
		t.Skip(err)
	}
	// ~300 KB of output, more than a pipe holds, before it gets ready.
	script := `i=0; while [ $i -lt 3000 ]; do echo "line $i ` + strings.Repeat("a", 90) + `"; i=$((i+1)); done
echo READY=1 >&3; exec sleep 1000`
	core := bootcfg.Service{Name: "core", Binary: sh, Args: []string{"-c", script}, Readiness: bootcfg.ReadyNotify, Critical: true}
	root := writeRoot(t, &bootcfg.Config{Services: []bootcfg.Service{core}})
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close() // never read: the console is stopped
	cmd := exec.Command(initBin, "-root", root)
	cmd.Stderr = w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	socket := filepath.Join(root, bootcfg.StatusSocket)
	status := func() *initstatus.Status {
		c, err := initstatus.Dial(socket)
		if err != nil {
			return nil
		}
		st, _ := c.Status()
		return st
	}
	waitFor := func(what string, ok func(*initstatus.Status) bool) *initstatus.Status {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			if st := status(); st != nil && ok(st) {
				return st
			}
			if time.Now().After(deadline) {
				t.Fatalf("with the console stopped: %s: not within 20s (status %+v)", what, status())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	st := waitFor("ready", func(st *initstatus.Status) bool { return st.Ready })
	pid := st.Services[0].PID
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor("the crash seen and the service restarted", func(st *initstatus.Status) bool {
		return st.Services[0].Restarts == 1 && st.Services[0].PID != pid
	})

	logDone := make(chan error, 1)
	go func() {
		c, err := initstatus.Dial(socket)
		if err == nil {
			_, err = c.Log()
		}
		logDone <- err
	}()
	select {
	case err := <-logDone:
		if err != nil {
			t.Fatalf("log op: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("log op: no answer within 20s")
	}

	cmd.Process.Signal(syscall.SIGUSR2)
	select {
	case <-exited:
		if waitErr != nil {
			t.Fatalf("init: %v", waitErr)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("init did not power off within 30s of SIGUSR2")
	}
	b, err := os.ReadFile(filepath.Join(root, bootcfg.RunDir, "init.log"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "init: powering off\n") {
		t.Fatalf("init.log lacks the power-off line:\n%s", b[max(0, len(b)-2000):])
	}
}

// gate is a console that takes no output until opened.
type gate struct {
	open chan struct{}
	mu   sync.Mutex
	out  []string
}

func (g *gate) Write(b []byte) (int, error) {
	<-g.open
	g.mu.Lock()
	g.out = append(g.out, string(b))
	g.mu.Unlock()
	return len(b), nil
}

// The console writer never blocks the logger: what does not fit its
// queue is dropped from the console, and the console says how much once
// it takes output again.
func TestConsoleWriterDropsAndSays(t *testing.T) {
	g := &gate{open: make(chan struct{})}
	log := newLogger(newConsoleWriter(g))
	start := time.Now()
	for i := range consoleQueue * 3 {
		log.Printf("line %d", i)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("logging to a stopped console took %s", d)
	}
	if n := len(log.Lines()); n != consoleQueue*3 {
		t.Fatalf("ring holds %d lines, want all %d", n, consoleQueue*3)
	}
	close(g.open)
	log.flush(waitTimeout)
	log.Printf("after")
	log.flush(waitTimeout)
	g.mu.Lock()
	defer g.mu.Unlock()
	if last := g.out[len(g.out)-1]; last != "init: after\n" {
		t.Fatalf("last console line %q", last)
	}
	var said bool
	for _, l := range g.out {
		said = said || strings.HasPrefix(l, "init: console: ") && strings.Contains(l, " lines not shown")
	}
	if !said || len(g.out) >= consoleQueue*3 {
		t.Fatalf("%d console lines, dropped lines counted: %v", len(g.out), said)
	}
}
