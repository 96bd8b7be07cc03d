package main

import (
	"testing"
	"time"

	"github.com/otgate/otgate/internal/bootcfg"
	"github.com/otgate/otgate/internal/initstatus"
	"github.com/otgate/otgate/internal/ready"
)

// A service that writes READY=1 and exits at once was ready, then
// exited, whichever init sees first. The test makes the harder order
// certain: the notify reader holds READY=1 until watch has taken the
// exit (hooks spawnOptions.notifyHook, supervisor.exitSeen). Before, the
// drain after an exit ignored READY=1 (and gave up after 500 ms): the
// same service was "ready" or "never ready" at random. Now the exit is a
// crash of a ready service (the never-ready rule does not count it; the
// status says "ready, then exited"), and the service never becomes ready
// in the status: a dependant does not start beside a service that is
// already gone.
func TestReadyWithItsExit(t *testing.T) {
	sh, err := lookPath("sh")
	if err != nil {
		t.Skip(err)
	}
	run := func(t *testing.T, cl bootcfg.CrashLoop, backoff time.Duration) (*supervisor, *logger) {
		edge := bootcfg.Service{Name: "edge", Binary: sh, Args: []string{"-c", "echo READY=1 >&3; exit 1"},
			Readiness: bootcfg.ReadyNotify, Timeout: time.Hour}
		dep := svc("dep", bootcfg.ReadyNotify, "-mode=steady")
		dep.DependsOn = []string{"edge"}
		exits := make(chan struct{}, 16)
		return runSupervisorWith(t, &bootcfg.Config{Services: []bootcfg.Service{edge, dep}, CrashLoop: cl}, func(sv *supervisor) {
			sv.backoffMin, sv.backoffMax = backoff, backoff
			sv.exitSeen = func(name string) {
				if name == "edge" {
					exits <- struct{}{}
				}
			}
			sv.spawn.notifyHook = func(line string) {
				if line == ready.MsgReady {
					select {
					case <-exits: // watch has taken the exit of this start
					case <-time.After(waitTimeout):
					}
				}
			}
		})
	}
	t.Run("status", func(t *testing.T) {
		sv, log := run(t, bootcfg.CrashLoop{Restarts: 5, Window: 30 * time.Second}, time.Hour)
		waitLine(t, log, "init: edge: READY=1 came with its exit (status 1): ready, then exited")
		waitState(t, sv, "edge", initstatus.StateBackoff)
		for _, st := range sv.snapshot() {
			switch st.Name {
			case "edge":
				if st.Reason != "ready, then exited (status 1)" || st.Restarts != 1 || st.LastExit != "status 1" {
					t.Errorf("edge: %+v, want in back-off, ready, then exited (status 1)", st)
				}
			case "dep":
				if st.State != initstatus.StateWaiting {
					t.Errorf("dep: %+v, want waiting for edge", st)
				}
			}
		}
		for _, l := range []string{"init: edge ready (", "init: dep ready ("} {
			if i := lineIndex(log.Lines(), l); i >= 0 {
				t.Errorf("%s", log.Lines()[i])
			}
		}
	})
	// Restarts come over 1.1 s apart, outside the 1 s window: only the
	// never-ready rule could stop them, and it counts only starts that
	// ended before ready (more than 1 in a row here).
	t.Run("a crash of a ready service", func(t *testing.T) {
		sv, log := run(t, bootcfg.CrashLoop{Restarts: 1, Window: bootcfg.MinCrashLoopWindow}, 1100*time.Millisecond)
		waitLine(t, log, "init: edge exited (status 1), restart 2 in ")
		if i := lineIndex(log.Lines(), "init: edge: never ready"); i >= 0 {
			t.Fatalf("ready, then exited counted as never ready: %s", log.Lines()[i])
		}
		if st := sv.snapshot()[0]; st.Name != "edge" || st.State == initstatus.StateFailed {
			t.Fatalf("%+v, want restarted on", st)
		}
		if i := lineIndex(log.Lines(), "init: dep ready ("); i >= 0 {
			t.Fatalf("a dependant started beside a service that was gone: %s", log.Lines()[i])
		}
	})
}
