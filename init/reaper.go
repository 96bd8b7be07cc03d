package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// reaper is the only code in init that waits for children. Supervised
// children are registered by pid under mu while they are started, so the
// exit status always reaches their supervisor; any other child (an orphan
// re-parented to PID 1) is reaped and logged. init never uses os/exec,
// whose Wait would race with this loop.
type reaper struct {
	log *logger
	// orphans: reap every child (wait4(-1)). Off in tests that run in the
	// go test process, where other children belong to the test.
	orphans bool

	mu    sync.Mutex
	byPID map[int]chan unix.WaitStatus
	sig   chan os.Signal
	quit  chan struct{}
}

func newReaper(log *logger, orphans bool) *reaper {
	return &reaper{log: log, orphans: orphans, byPID: map[int]chan unix.WaitStatus{}, quit: make(chan struct{})}
}

// run reaps on every SIGCHLD until stop.
func (r *reaper) run() {
	r.sig = make(chan os.Signal, 1)
	signal.Notify(r.sig, syscall.SIGCHLD)
	go func() {
		defer signal.Stop(r.sig)
		for {
			guard(r.log, "reaper", r.reap)
			select {
			case <-r.sig:
			case <-r.quit:
				return
			}
		}
	}()
}

func (r *reaper) stop() { close(r.quit) }

// start forks and execs under the lock and registers the child, so the
// reaper cannot collect it before its exit channel exists.
func (r *reaper) start(argv0 string, argv []string, attr *syscall.ProcAttr) (int, <-chan unix.WaitStatus, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	pid, err := syscall.ForkExec(argv0, argv, attr)
	if err != nil {
		return 0, nil, err
	}
	ch := make(chan unix.WaitStatus, 1)
	r.byPID[pid] = ch
	return pid, ch, nil
}

func (r *reaper) reap() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.orphans {
		for pid, ch := range r.byPID {
			var ws unix.WaitStatus
			got, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil)
			if err == nil && got == pid {
				delete(r.byPID, pid)
				ch <- ws
			}
		}
		return
	}
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || pid <= 0 {
			return
		}
		if ch, ok := r.byPID[pid]; ok {
			delete(r.byPID, pid)
			ch <- ws
			continue
		}
		r.log.Printf("reaped orphan %d (%s)", pid, exitString(ws))
	}
}

// exitString renders a wait status: "status 1" or "signal killed".
func exitString(ws unix.WaitStatus) string {
	switch {
	case ws.Exited():
		return fmt.Sprintf("status %d", ws.ExitStatus())
	case ws.Signaled():
		return "signal " + unix.SignalName(ws.Signal())
	}
	return fmt.Sprintf("wait status %#x", uint32(ws))
}

// guard runs f and turns a panic into a log line: init never dies.
func guard(log *logger, what string, f func()) {
	defer func() {
		if p := recover(); p != nil {
			log.Printf("PANIC in %s (recovered, continuing): %v", what, p)
		}
	}()
	f()
}
