package main

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/otgate/otgate/internal/bootcfg"
	"github.com/otgate/otgate/internal/initstatus"
)

// A signal init does not use (kill -HUP 1, kill -QUIT 1, a SIGSEGV sent
// by kill, ...) is logged and ignored: the Go runtime's default for these
// would end the process, and PID 1 ending panics the kernel. Init keeps
// running and supervising, and still powers off on SIGUSR2.
func TestHostInitSurvivesStraySignals(t *testing.T) {
	core := svc("core", bootcfg.ReadyNotify, "-mode=steady")
	core.Critical = true
	h := runHostInit(t, writeRoot(t, &bootcfg.Config{Services: []bootcfg.Service{core}}), "")
	h.wait(t, "init: ready (")
	for _, sig := range []syscall.Signal{syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGABRT, syscall.SIGSEGV, syscall.SIGBUS,
		syscall.SIGFPE, syscall.SIGILL, syscall.SIGTRAP, syscall.SIGSYS, syscall.SIGSTKFLT, syscall.SIGPIPE} {
		if err := h.cmd.Process.Signal(sig); err != nil {
			t.Fatalf("%v: %v", sig, err)
		}
		want := fmt.Sprintf("init: signal %v ignored", sig)
		deadline := time.Now().Add(waitTimeout)
		for sig != syscall.SIGPIPE && lineIndex(h.lines(), want) < 0 && time.Now().Before(deadline) && !h.exited() {
			time.Sleep(20 * time.Millisecond)
		}
		select {
		case <-h.done:
			t.Fatalf("init ended on %v", sig)
		case <-time.After(100 * time.Millisecond):
		}
		if sig != syscall.SIGPIPE && lineIndex(h.lines(), want) < 0 {
			t.Fatalf("no line %q", want)
		}
	}
	st, err := h.dial(t).Status()
	if err != nil || !st.Ready || st.Services[0].State != initstatus.StateReady || st.Services[0].Restarts != 0 {
		t.Fatalf("status after the signals: %+v, %v", st, err)
	}
	h.cmd.Process.Signal(syscall.SIGUSR2)
	<-h.done
	if err := h.cmd.Wait(); err != nil || lineIndex(h.lines(), "init: powering off") < 0 {
		t.Fatalf("shutdown after the signals: %v", err)
	}
}

func (h *hostInit) exited() bool {
	select {
	case <-h.done:
		return true
	default:
		return false
	}
}
