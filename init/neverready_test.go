package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/otgate/otgate/internal/bootcfg"
	"github.com/otgate/otgate/internal/initstatus"
	"golang.org/x/sys/unix"
)

// A service that fails slowly, too seldom for the crash-loop window
// (killed at its readiness timeout, or exiting after a while but before
// ready), is marked failed after the crash loop's number of restarts in
// a row that all ended before ready; what depends on it is not started,
// and a critical dependant stops the watchdog's petting.
func TestNeverReadyMarkedFailed(t *testing.T) {
	sh, err := lookPath("sh")
	if err != nil {
		t.Skip(err)
	}
	for _, tc := range []struct {
		name, script string
		timeout      time.Duration
		last         string
	}{
		{"readiness timeout", "exec sleep 100", 200 * time.Millisecond, "not ready after 200ms"},
		{"exit before ready", "sleep 0.3; exit 4", 30 * time.Second, "exited (status 4)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			slow := bootcfg.Service{Name: "slow", Binary: sh, Args: []string{"-c", tc.script}, Readiness: bootcfg.ReadyNotify, Timeout: tc.timeout}
			proxy := svc("proxy", bootcfg.ReadyNotify, "-mode=steady")
			proxy.DependsOn = []string{"slow"}
			proxy.Critical = true
			// Restarts come at least 0.45 s, then 0.7 s apart (a 0.2 s
			// run and 0.25 s, then 0.5 s of back-off): never 2 inside
			// the shortest window bootcfg allows, 1 s.
			cfg := &bootcfg.Config{Services: []bootcfg.Service{slow, proxy},
				CrashLoop: bootcfg.CrashLoop{Restarts: 2, Window: bootcfg.MinCrashLoopWindow}}
			sv, log := runSupervisor(t, cfg)
			if ok, why := sv.criticalHealthy(); !ok {
				t.Fatalf("a critical service waiting for its dependency stops the watchdog: %s", why)
			}
			waitLine(t, log, "init: slow: never ready: 3 starts in a row ended before ready (last: "+tc.last+"), marked failed")
			waitLine(t, log, "init: proxy: not started: dependency slow failed")
			for _, s := range sv.snapshot() {
				switch s.Name {
				case "slow":
					if s.State != initstatus.StateFailed || s.Restarts != 2 || s.Reason != "never ready: 3 starts in a row ended before ready, last: "+tc.last {
						t.Errorf("slow: %+v, want failed after 2 restarts, the reason naming the rule", s)
					}
				case "proxy":
					if s.State != initstatus.StateFailed || s.PID != 0 {
						t.Errorf("proxy: %+v, want failed, never started", s)
					}
				}
			}
			if ok, why := sv.criticalHealthy(); ok || why != "proxy failed" {
				t.Errorf("critical healthy %v (%q), want not healthy: proxy failed", ok, why)
			}
			if i := lineIndex(log.Lines(), "init: slow: crash loop"); i >= 0 {
				t.Errorf("counted as a crash loop: %s", log.Lines()[i])
			}
			// Failed is final: no further start.
			n := len(log.Lines())
			time.Sleep(time.Second)
			for _, l := range log.Lines()[n:] {
				if strings.HasPrefix(l, "init: slow") {
					t.Errorf("slow ran again after being marked failed: %s", l)
				}
			}
		})
	}
}

// Only starts in a row count: a service that gets ready on every other
// start keeps being restarted (the crash-loop window alone judges it).
func TestNeverReadyCountsOnlyStartsInARow(t *testing.T) {
	sh, err := lookPath("sh")
	if err != nil {
		t.Skip(err)
	}
	n := filepath.Join(t.TempDir(), "n")
	script := `n=$(cat ` + n + ` 2>/dev/null || echo 0); n=$((n+1)); echo $n > ` + n + `
if [ $((n % 2)) -eq 0 ]; then echo READY=1 >&3; fi
sleep 0.3; exit 1`
	s := bootcfg.Service{Name: "halfway", Binary: sh, Args: []string{"-c", script}, Readiness: bootcfg.ReadyNotify}
	// Restarts come at least 0.55 s apart (a 0.3 s run, 0.25 s of
	// back-off): never 2 inside the shortest window bootcfg allows, 1 s.
	cfg := &bootcfg.Config{Services: []bootcfg.Service{s}, CrashLoop: bootcfg.CrashLoop{Restarts: 2, Window: bootcfg.MinCrashLoopWindow}}
	sv, log := runSupervisorWith(t, cfg, func(sv *supervisor) { sv.backoffMax = 250 * time.Millisecond })
	waitLine(t, log, "init: halfway exited (status 1), restart 6 in ")
	if i := lineIndex(log.Lines(), "init: halfway: never ready"); i >= 0 {
		t.Fatalf("starts that were not in a row counted: %s", log.Lines()[i])
	}
	if st := sv.snapshot()[0]; st.State == initstatus.StateFailed {
		t.Fatalf("status %+v, want restarted on", st)
	}
}

// A dependant that exits while its dependency is down is restarted only
// once the dependency is up again; one whose dependency failed meanwhile
// is not restarted and fails too (held when the dependency is). A
// running dependant is left alone while its dependency restarts.
func TestDependantRestartWaitsForDependency(t *testing.T) {
	sh, err := lookPath("sh")
	if err != nil {
		t.Skip(err)
	}
	for _, refuse := range []bool{false, true} {
		name := "dependency ready again"
		if refuse {
			name = "dependency fails"
		}
		t.Run(name, func(t *testing.T) {
			d := t.TempDir()
			// First start: ready, exit 1 once d/crash exists. Later
			// starts: wait for d/again, then exit ExitNoRestart if
			// d/refuse exists, else ready.
			script := `d=` + d + `; n=$(cat $d/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > $d/n
if [ $n -eq 1 ]; then echo READY=1 >&3; while [ ! -e $d/crash ]; do sleep 0.05; done; exit 1; fi
while [ ! -e $d/again ]; do sleep 0.05; done
if [ -e $d/refuse ]; then exit 100; fi
echo READY=1 >&3; exec sleep 1000`
			base := bootcfg.Service{Name: "base", Binary: sh, Args: []string{"-c", script}, Readiness: bootcfg.ReadyNotify}
			top := svc("top", bootcfg.ReadyNotify, "-mode=steady")
			top.DependsOn = []string{"base"}
			touch := func(f string) {
				if err := os.WriteFile(filepath.Join(d, f), nil, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			sv, log := runSupervisor(t, &bootcfg.Config{Services: []bootcfg.Service{base, top},
				CrashLoop: bootcfg.CrashLoop{Restarts: 5, Window: 30 * time.Second}})
			waitLine(t, log, "init: top ready (")
			pid := sv.byName["top"].snapshotPID()

			touch("crash")
			waitLine(t, log, "init: base exited (status 1), restart 1 in 250ms")
			waitState(t, sv, "base", initstatus.StateStarting)
			time.Sleep(300 * time.Millisecond)
			if st, p := sv.byName["top"].getState(), sv.byName["top"].snapshotPID(); st != initstatus.StateReady || p != pid {
				t.Fatalf("top %s, pid %d while base restarts; want left running as pid %d", st, p, pid)
			}

			if err := unix.Kill(pid, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			waitLine(t, log, "init: top: restart waits for base (starting)")
			waitState(t, sv, "top", initstatus.StateWaiting)
			time.Sleep(500 * time.Millisecond)
			if s := sv.snapshot()[1]; s.State != initstatus.StateWaiting || s.PID != 0 || s.Reason != "waiting for base (starting)" {
				t.Fatalf("top: %+v, want waiting for base, not running", s)
			}

			if refuse {
				touch("refuse")
				touch("again")
				waitLine(t, log, "init: top: not restarted: dependency base failed")
				waitState(t, sv, "top", initstatus.StateFailed)
				if !sv.byName["top"].isHeld() {
					t.Error("top not held, its dependency is")
				}
				return
			}
			touch("again")
			waitState(t, sv, "top", initstatus.StateReady)
			lines := log.Lines()
			if baseReady, topReady := lastIndex(lines, "init: base ready ("), lastIndex(lines, "init: top ready ("); baseReady < 0 || topReady < baseReady || topReady == lineIndex(lines, "init: top ready (") {
				t.Fatalf("base ready again at line %d, top ready again at %d:\n%s", baseReady, topReady, strings.Join(lines, "\n"))
			}
		})
	}
}

func lastIndex(lines []string, prefix string) int {
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.HasPrefix(lines[i], prefix) {
			return i
		}
	}
	return -1
}
