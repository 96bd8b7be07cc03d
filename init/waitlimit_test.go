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

// A critical service that waits for a dependency that does not come up
// (here a non-critical one killed at its readiness timeout again and
// again, with the crash-loop rules off so it is never marked failed)
// counts as healthy only for its wait limit: then it is not healthy, the
// log and the watchdog's note say why, and the watchdog (a pipe) is no
// longer petted. Once the dependency comes up the service starts and
// the petting resumes. The same holds for a restart that waits.
func TestCriticalWaitingTooLongNotHealthy(t *testing.T) {
	sh, err := lookPath("sh")
	if err != nil {
		t.Skip(err)
	}
	for _, restart := range []bool{false, true} {
		name := "first start"
		if restart {
			name = "restart"
		}
		t.Run(name, func(t *testing.T) {
			d := t.TempDir()
			// base: with d/first-ready (the restart run), ready on its
			// first start and exit 1 once d/crash exists; every other
			// start is ready only once d/up exists, and is killed at
			// its readiness timeout until then. The first start is told
			// by mkdir, which only one start can win: a start counter
			// in a file was reset when a start killed at its timeout had
			// just truncated it, and the next start came up at once.
			script := `d=` + d + `
if [ -e $d/first-ready ] && mkdir $d/started 2>/dev/null; then echo READY=1 >&3; while [ ! -e $d/crash ]; do sleep 0.05; done; exit 1; fi
while [ ! -e $d/up ]; do sleep 0.05; done
echo READY=1 >&3; exec sleep 1000`
			touch := func(f string) {
				if err := os.WriteFile(filepath.Join(d, f), nil, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if restart {
				touch("first-ready")
			}
			base := bootcfg.Service{Name: "base", Binary: sh, Args: []string{"-c", script}, Readiness: bootcfg.ReadyNotify,
				Timeout: time.Second} // a loaded machine's shell is ready well inside it
			top := svc("top", bootcfg.ReadyNotify, "-mode=steady")
			top.DependsOn = []string{"base"}
			top.Critical = true
			top.Timeout = 2 * time.Second
			begin := time.Now()
			sv, log := runSupervisorWith(t, &bootcfg.Config{Services: []bootcfg.Service{base, top}}, func(sv *supervisor) {
				sv.backoffMin, sv.backoffMax = 50*time.Millisecond, 100*time.Millisecond
			})
			// top's chain: (2 s + 100 ms) + (1 s + 100 ms).
			const limit = "3.2s"
			if got := short(sv.byName["top"].waitLimit); got != limit {
				t.Fatalf("top's wait limit %s, want %s", got, limit)
			}
			rd, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer rd.Close()
			pets := newPetCounter(rd)
			wd := newWatchdog(log, w, "pipe", 300*time.Millisecond, sv.criticalHealthy)
			wd.run()
			defer wd.close()

			if restart {
				waitLine(t, log, "init: top ready (")
				touch("crash")
				waitLine(t, log, "init: base exited (status 1), restart 1 in 50ms")
				begin = time.Now()
				if err := unix.Kill(sv.byName["top"].snapshotPID(), syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
				waitLine(t, log, "init: top: restart waits for base (")
			} else if ok, why := sv.criticalHealthy(); !ok && time.Since(begin) < 2*time.Second {
				t.Fatalf("not healthy %s after the start, inside the wait limit: %s", time.Since(begin), why)
			}
			i := waitLine(t, log, "init: top: waiting for base (")
			if l := log.Lines()[i]; !strings.Contains(l, " for over "+limit+": not healthy") {
				t.Fatalf("line %q does not say the wait is over the limit", l)
			}
			if took := time.Since(begin); took < 3200*time.Millisecond {
				t.Fatalf("not healthy after %s, inside the %s wait limit", took, limit)
			}
			waitLine(t, log, "init: watchdog: not petting: top waiting for over "+limit+": waiting for base (")
			ok, why := sv.criticalHealthy()
			if ok || !strings.HasPrefix(why, "top waiting for over "+limit+": waiting for base (") {
				t.Fatalf("critical healthy %v (%q), want not healthy, naming the wait", ok, why)
			}
			if pet, _, note := wd.state(); pet || !strings.HasPrefix(note, "top waiting for over "+limit) {
				t.Fatalf("watchdog petting=%v note %q", pet, note)
			}
			if s := sv.snapshot()[1]; s.State != initstatus.StateWaiting || s.PID != 0 || !strings.HasPrefix(s.Reason, "waiting for base (") {
				t.Fatalf("top: %+v, want waiting for base, not running", s)
			}
			before := pets.count()
			time.Sleep(4 * wd.interval)
			if n := pets.count() - before; n > 1 { // one may have been on its way
				t.Fatalf("%d pets while the critical service waited past its limit", n)
			}

			touch("up")
			waitState(t, sv, "top", initstatus.StateReady)
			waitLine(t, log, "init: watchdog: petting again")
			if ok, why := sv.criticalHealthy(); !ok {
				t.Fatalf("not healthy once top is ready: %s", why)
			}
		})
	}
}
