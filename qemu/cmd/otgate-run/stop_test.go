package main

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/otgate/otgate/qemu"
)

// procGate stands for the VM in the stop sequence: a real child process
// (sh) that powers off (exits 0) when its power button is pressed
// (SIGUSR1), or ignores the button.
type procGate struct {
	cmd     *exec.Cmd
	done    chan struct{}
	pressed chan struct{} // closed at the first Powerdown

	mu      sync.Mutex
	presses int
	killed  bool
}

func startProcGate(t *testing.T, takesButton bool) *procGate {
	t.Helper()
	trap := `trap 'exit 0' USR1`
	if !takesButton {
		trap = `trap '' USR1`
	}
	cmd := exec.Command("sh", "-c", trap+"; echo up; while :; do sleep 0.05; done")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	g := &procGate{cmd: cmd, done: make(chan struct{}), pressed: make(chan struct{})}
	// "up": the trap is set.
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "up\n" {
		cmd.Process.Kill()
		t.Fatalf("gate process: %q, %v", line, err)
	}
	go func() { cmd.Wait(); close(g.done) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-g.done })
	return g
}

func (g *procGate) Powerdown(context.Context) error {
	g.mu.Lock()
	g.presses++
	if g.presses == 1 {
		close(g.pressed)
	}
	g.mu.Unlock()
	return g.cmd.Process.Signal(syscall.SIGUSR1)
}

func (g *procGate) Kill() {
	g.mu.Lock()
	g.killed = true
	g.mu.Unlock()
	g.cmd.Process.Kill()
}

func (g *procGate) Wait(context.Context) (qemu.Exit, error) {
	<-g.done
	g.mu.Lock()
	defer g.mu.Unlock()
	return qemu.Exit{Code: g.cmd.ProcessState.ExitCode(), Killed: g.killed}, nil
}

// keepAlive makes sure sig cannot end the test binary if the code under
// test does not catch it: the test then fails on its own terms.
func keepAlive(t *testing.T, sig os.Signal) {
	c := make(chan os.Signal, 8)
	signal.Notify(c, sig)
	t.Cleanup(func() { signal.Stop(c) })
}

// runStopped runs runUntilStopped in the background.
func runStopped(s *stopper, g gate) (<-chan qemu.Exit, *strings.Builder) {
	var out strings.Builder
	res := make(chan qemu.Exit, 1)
	go func() { res <- runUntilStopped(s, g, &out) }()
	return res, &out
}

func waitExit(t *testing.T, res <-chan qemu.Exit, what string) qemu.Exit {
	t.Helper()
	select {
	case e := <-res:
		return e
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: the stop sequence did not end in 30 s", what)
		return qemu.Exit{}
	}
}

// Each stop signal, SIGHUP (the terminal closed) like Ctrl-C, presses the
// gate's power button; the gate powers off and nothing is killed.
func TestStopSignalsPressThePowerButton(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGHUP, syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			keepAlive(t, sig)
			g := startProcGate(t, true)
			s := watchStop()
			defer s.release()
			res, out := runStopped(s, g)
			if err := syscall.Kill(os.Getpid(), sig); err != nil {
				t.Fatal(err)
			}
			e := waitExit(t, res, sig.String())
			if e.Code != 0 || e.Killed || g.presses != 1 {
				t.Errorf("after %v: exit %+v, %d presses; want one press and a clean power-off", sig, e, g.presses)
			}
			if want := sig.String() + ": powering the gate down"; !strings.Contains(out.String(), want) {
				t.Errorf("output %q, want %q", out, want)
			}
		})
	}
}

// A gate that does not power off is killed at the second signal.
func TestSecondStopSignalKillsTheGate(t *testing.T) {
	keepAlive(t, syscall.SIGINT)
	g := startProcGate(t, false)
	s := watchStop()
	defer s.release()
	res, _ := runStopped(s, g)
	syscall.Kill(os.Getpid(), syscall.SIGINT)
	select {
	case <-g.pressed:
	case <-time.After(30 * time.Second):
		t.Fatal("no power button press 30 s after Ctrl-C")
	}
	syscall.Kill(os.Getpid(), syscall.SIGINT)
	if e := waitExit(t, res, "second Ctrl-C"); !e.Killed {
		t.Fatalf("after the second Ctrl-C: %+v, want the gate killed", e)
	}
}

// A gate that powers off on its own ends the run without a press.
func TestGateExitEndsTheRun(t *testing.T) {
	g := startProcGate(t, true)
	s := watchStop()
	defer s.release()
	res, _ := runStopped(s, g)
	g.cmd.Process.Signal(syscall.SIGUSR1) // the guest powered off by itself
	if e := waitExit(t, res, "gate exit"); e.Code != 0 || g.presses != 0 {
		t.Fatalf("exit %+v, %d presses; want a clean exit and no press", e, g.presses)
	}
}

// A stop signal during the start-up (before any gate runs) cancels the
// start's context with the signal as its cause, so a step that honours
// it ends at once: here a real child process started with it (as the
// demo tools' go build is), and the error says why.
func TestStopSignalCancelsTheStartUp(t *testing.T) {
	keepAlive(t, syscall.SIGHUP)
	s := watchStop()
	defer s.release()
	step := exec.CommandContext(s.ctx, "sleep", "60")
	if err := step.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- step.Wait() }()
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	select {
	case err := <-waited:
		if err == nil {
			t.Fatal("the start-up step ended cleanly, want it killed")
		}
	case <-time.After(30 * time.Second):
		step.Process.Kill()
		t.Fatal("the start-up step still runs 30 s after SIGHUP")
	}
	err := startErr(s, errors.New("boom"))
	if want := "hangup during the start-up: stopped (boom)"; err.Error() != want {
		t.Fatalf("start error %q, want %q", err, want)
	}
}
