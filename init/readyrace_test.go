package main

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/otgate/otgate/internal/bootcfg"
	"github.com/otgate/otgate/internal/initstatus"
	"github.com/otgate/otgate/internal/ready"
)

// A service that wrote READY=1 before its readiness timer fired is ready,
// not killed, even when init had not read the line yet: the readiness
// timer (a channel the test fires) fires while the notify reader holds
// READY=1 itself, or an earlier line with READY=1 behind it in the pipe.
// Before, the timer's case ran first and killed the service that had
// reported ready (then took the late READY=1 and called it ready).
func TestReadyAtTheTimeoutCounts(t *testing.T) {
	sh, err := lookPath("sh")
	if err != nil {
		t.Skip(err)
	}
	for _, hold := range []string{ready.MsgReady, ready.MsgStatus + "almost"} {
		t.Run(hold, func(t *testing.T) {
			d := t.TempDir()
			written := filepath.Join(d, "written")
			// Two writes: the lines reach the pipe one at a time.
			script := `echo STATUS=almost >&3; echo READY=1 >&3; : > ` + written + `; exec sleep 1000`
			s := bootcfg.Service{Name: "edge", Binary: sh, Args: []string{"-c", script}, Readiness: bootcfg.ReadyNotify,
				Timeout: time.Hour}
			fire := make(chan time.Time) // unbuffered: a send returns once watch has the timer's tick
			held := make(chan struct{})
			release := make(chan struct{})
			sv, log := runSupervisorWith(t, &bootcfg.Config{Services: []bootcfg.Service{s}}, func(sv *supervisor) {
				sv.readyTimer = func(time.Duration) (<-chan time.Time, func() bool) { return fire, func() bool { return true } }
				var once sync.Once
				sv.spawn.notifyHook = func(line string) {
					if line == hold {
						once.Do(func() {
							held <- struct{}{}
							<-release
						})
					}
				}
			})
			select {
			case <-held:
			case <-time.After(waitTimeout):
				t.Fatalf("the notify reader never got %q", hold)
			}
			// Both lines are written (in the pipe, or read and not yet
			// passed on) before the timer fires.
			deadline := time.Now().Add(waitTimeout)
			for {
				if _, err := os.Stat(written); err == nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("the service did not write its lines")
				}
				time.Sleep(10 * time.Millisecond)
			}
			// The supervisor marks the service starting once the spawn
			// returns, which can come after the reader got its first
			// line: wait for it (a race seen under -race, 1 run in 15).
			for sv.byName["edge"].getState() != initstatus.StateStarting {
				if time.Now().After(deadline) {
					t.Fatalf("state %s before the timeout, want starting", sv.byName["edge"].getState())
				}
				time.Sleep(time.Millisecond)
			}
			pid := sv.byName["edge"].snapshotPID()
			select {
			case fire <- time.Now():
			case <-time.After(waitTimeout):
				t.Fatal("watch never took the readiness timer")
			}
			close(release)
			for sv.byName["edge"].getState() != initstatus.StateReady {
				if i := lineIndex(log.Lines(), "init: edge: not ready after"); i >= 0 {
					t.Fatalf("killed though it had written READY=1 before the timeout: %s", log.Lines()[i])
				}
				if time.Now().After(deadline) {
					t.Fatalf("edge: state %s, want ready", sv.byName["edge"].getState())
				}
				time.Sleep(10 * time.Millisecond)
			}
			if i := lineIndex(log.Lines(), "init: edge: not ready after"); i >= 0 {
				t.Fatalf("killed though it had written READY=1 before the timeout: %s", log.Lines()[i])
			}
			if st := sv.snapshot()[0]; st.State != initstatus.StateReady || st.PID != pid || st.Restarts != 0 {
				t.Fatalf("edge: %+v, want ready as pid %d, never restarted", st, pid)
			}
		})
	}
}
