package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/otgate/otgate/internal/bootcfg"
	"github.com/otgate/otgate/internal/initstatus"
)

func TestDependentStartsAfterDependencyReady(t *testing.T) {
	dir := t.TempDir()
	// base crashes twice before it becomes ready (~0.75s of back-off);
	// mid and top must not start before it is.
	base := svc("base", bootcfg.ReadyNotify, "-mode=flaky", "-crashes=2", "-state="+filepath.Join(dir, "base"))
	mid := svc("mid", bootcfg.ReadyNotify, "-mode=steady")
	mid.DependsOn = []string{"base"}
	top := svc("top", bootcfg.ReadyNotify, "-mode=steady")
	top.DependsOn = []string{"mid"}
	// Table order is the reverse of dependency order on purpose.
	_, log := runSupervisor(t, &bootcfg.Config{Services: []bootcfg.Service{top, mid, base}})
	waitLine(t, log, "init: top ready (")
	// A service's output reaches the log through its pipe's reader,
	// which may run after init's own line on its readiness (slow under
	// -race): wait for both outputs before reading the order.
	waitLine(t, log, "mid: ")
	waitLine(t, log, "top: ")
	lines := log.Lines()
	baseReady := lineIndex(lines, "init: base ready (")
	midOut := lineIndex(lines, "mid: ")
	midReady := lineIndex(lines, "init: mid ready (")
	topOut := lineIndex(lines, "top: ")
	if !(baseReady >= 0 && baseReady < midOut && baseReady < midReady && midReady < topOut) {
		t.Fatalf("order wrong: base ready at %d, mid output at %d, mid ready at %d, top output at %d:\n%s",
			baseReady, midOut, midReady, topOut, strings.Join(lines, "\n"))
	}
}

func TestRestartBackoffDoubles(t *testing.T) {
	f := svc("flaky", bootcfg.ReadyNotify, "-mode=flaky", "-crashes=3", "-state="+filepath.Join(t.TempDir(), "n"))
	sv, log := runSupervisor(t, &bootcfg.Config{Services: []bootcfg.Service{f}})
	waitLine(t, log, "init: flaky ready (")
	var got []string
	for _, l := range log.Lines() {
		if strings.HasPrefix(l, "init: flaky exited") {
			got = append(got, l)
		}
	}
	want := []string{
		"init: flaky exited (status 1), restart 1 in 250ms",
		"init: flaky exited (status 1), restart 2 in 500ms",
		"init: flaky exited (status 1), restart 3 in 1s",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("exit lines:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	st := sv.snapshot()[0]
	if st.State != initstatus.StateReady || st.Restarts != 3 || st.LastExit != "status 1" || st.PID == 0 {
		t.Fatalf("status %+v, want ready, 3 restarts, last exit status 1, a pid", st)
	}
}

func TestCrashLoopMarkedFailedOthersKeepRunning(t *testing.T) {
	steady := svc("steady", bootcfg.ReadyNotify, "-mode=steady")
	steady.Critical = true
	bad := svc("bad", bootcfg.ReadyNotify, "-mode=crash")
	after := svc("after-bad", bootcfg.ReadyNotify, "-mode=steady")
	after.DependsOn = []string{"bad"}
	cfg := &bootcfg.Config{
		Services:  []bootcfg.Service{steady, bad, after},
		CrashLoop: bootcfg.CrashLoop{Restarts: 3, Window: 30 * time.Second},
	}
	sv, log := runSupervisor(t, cfg)
	waitState(t, sv, "steady", initstatus.StateReady)
	pid := sv.byName["steady"].snapshotPID()
	waitLine(t, log, "init: bad: crash loop (3 restarts in 30s), marked failed")
	waitLine(t, log, "init: after-bad: not started: dependency bad failed")
	for _, s := range sv.snapshot() {
		switch s.Name {
		case "bad":
			if s.State != initstatus.StateFailed || s.Restarts != 3 {
				t.Errorf("bad: %+v, want failed after 3 restarts", s)
			}
		case "after-bad":
			if s.State != initstatus.StateFailed {
				t.Errorf("after-bad: %+v, want failed", s)
			}
		case "steady":
			if s.State != initstatus.StateReady || s.PID != pid {
				t.Errorf("steady: %+v, want still ready with pid %d", s, pid)
			}
		}
	}
	// A failed service is not restarted again.
	n := len(log.Lines())
	time.Sleep(time.Second)
	for _, l := range log.Lines()[n:] {
		if strings.HasPrefix(l, "bad: ") || strings.HasPrefix(l, "init: bad") {
			t.Errorf("bad ran again after being marked failed: %s", l)
		}
	}
}

func TestOneShot(t *testing.T) {
	tru, err := lookPath("true")
	if err != nil {
		t.Skip(err)
	}
	once := bootcfg.Service{Name: "once", Binary: tru, Readiness: bootcfg.ReadyExit}
	user := svc("user", bootcfg.ReadyNotify, "-mode=steady")
	user.DependsOn = []string{"once"}
	sv, log := runSupervisor(t, &bootcfg.Config{Services: []bootcfg.Service{once, user}})
	waitLine(t, log, "init: user ready (")
	if i, j := lineIndex(log.Lines(), "init: once done ("), lineIndex(log.Lines(), "init: user ready ("); i < 0 || i > j {
		t.Fatalf("once done at line %d, user ready at %d", i, j)
	}
	s := sv.snapshot()[0]
	if s.State != initstatus.StateDone || s.Restarts != 0 || s.LastExit != "status 0" {
		t.Fatalf("once: %+v, want done, never restarted", s)
	}
}

func TestOneShotFailureIsRestarted(t *testing.T) {
	fls, err := lookPath("false")
	if err != nil {
		t.Skip(err)
	}
	_, log := runSupervisor(t, &bootcfg.Config{Services: []bootcfg.Service{{Name: "once", Binary: fls, Readiness: bootcfg.ReadyExit}}})
	waitLine(t, log, "init: once exited (status 1), restart 1 in 250ms")
}

func TestReadinessTimeoutKills(t *testing.T) {
	sleep, err := lookPath("sleep")
	if err != nil {
		t.Skip(err)
	}
	s := bootcfg.Service{Name: "mute", Binary: sleep, Args: []string{"100"}, Readiness: bootcfg.ReadyNotify, Timeout: 300 * time.Millisecond}
	_, log := runSupervisor(t, &bootcfg.Config{Services: []bootcfg.Service{s}})
	waitLine(t, log, "init: mute: not ready after 300ms, killing it")
	waitLine(t, log, "init: mute exited (signal SIGKILL), restart 1 in 250ms")
}

func TestStartedReadiness(t *testing.T) {
	sleep, err := lookPath("sleep")
	if err != nil {
		t.Skip(err)
	}
	s := bootcfg.Service{Name: "plain", Binary: sleep, Args: []string{"100"}, Readiness: bootcfg.ReadyStarted}
	sv, log := runSupervisor(t, &bootcfg.Config{Services: []bootcfg.Service{s}})
	waitLine(t, log, "init: plain ready (")
	waitState(t, sv, "plain", initstatus.StateReady)
}

func TestStopReverseOrderKillsAfterGrace(t *testing.T) {
	a := svc("a", bootcfg.ReadyNotify, "-mode=steady")
	b := svc("b", bootcfg.ReadyNotify, "-mode=hang-on-term")
	b.DependsOn = []string{"a"}
	c := svc("c", bootcfg.ReadyNotify, "-mode=steady")
	c.DependsOn = []string{"b"}
	grace := 700 * time.Millisecond
	sv, log := runSupervisor(t, &bootcfg.Config{Services: []bootcfg.Service{a, b, c}, StopGrace: grace})
	waitLine(t, log, "init: c ready (")
	n := len(log.Lines())
	start := time.Now()
	sv.stopAll()
	took := time.Since(start)
	var got []string
	for _, l := range log.Lines()[n:] {
		if strings.HasPrefix(l, "init: ") {
			// "stopped (0.01s)": keep the words, drop the time.
			if i := strings.Index(l, " ("); i > 0 && strings.HasSuffix(l, "s)") {
				l = l[:i]
			}
			got = append(got, l)
		}
	}
	want := []string{
		"init: stopping c", "init: c stopped",
		"init: stopping b", "init: b: still running after 700ms, sending SIGKILL", "init: b stopped",
		"init: stopping a", "init: a stopped",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("stop lines:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if took < grace {
		t.Fatalf("stopAll took %s, less than the grace %s b should have had", took, grace)
	}
	for _, s := range sv.snapshot() {
		if s.State != initstatus.StateStopped {
			t.Errorf("%s: state %s, want stopped", s.Name, s.State)
		}
		if s.Name == "b" && s.LastExit != "signal SIGKILL" {
			t.Errorf("b: last exit %q, want signal SIGKILL", s.LastExit)
		}
	}
}

func lookPath(name string) (string, error) {
	for _, d := range []string{"/bin", "/usr/bin"} {
		p := filepath.Join(d, name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", os.ErrNotExist
}

func (s *service) snapshotPID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pid
}

// A service that ran ready longer than the reset time restarts after the
// first delay again instead of a doubled one.
func TestBackoffResetsAfterHealthyRun(t *testing.T) {
	sh, err := lookPath("sh")
	if err != nil {
		t.Skip(err)
	}
	s := bootcfg.Service{Name: "tired", Binary: sh, Args: []string{"-c", "echo READY=1 >&3; sleep 0.4; exit 3"}, Readiness: bootcfg.ReadyNotify}
	cfg := &bootcfg.Config{Services: []bootcfg.Service{s}}
	if err := cfg.Validate(nil); err != nil {
		t.Fatal(err)
	}
	log := newLogger(newTestWriter(t))
	r := newReaper(log, false)
	r.run()
	sv, err := newSupervisor(cfg, log, r, spawnOptions{deathSignal: 9})
	if err != nil {
		t.Fatal(err)
	}
	sv.backoffReset = 200 * time.Millisecond
	sv.start()
	t.Cleanup(func() { sv.stopAll(); r.stop() })
	waitLine(t, log, "init: tired exited (status 3), restart 3 in ")
	for i, want := range []string{
		"init: tired exited (status 3), restart 1 in 250ms",
		"init: tired exited (status 3), restart 2 in 250ms",
		"init: tired exited (status 3), restart 3 in 250ms",
	} {
		if lineIndex(log.Lines(), want) < 0 {
			t.Fatalf("exit %d: no line %q", i+1, want)
		}
	}
}

// threadNices returns the nice value of every thread of pid
// (/proc/<pid>/task/*/stat field 19).
func threadNices(t *testing.T, pid int) []int {
	t.Helper()
	stats, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
	if err != nil || len(stats) == 0 {
		t.Fatalf("threads of %d: %v", pid, err)
	}
	var nices []int
	for _, p := range stats {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // the thread ended
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		n, err := strconv.Atoi(f[16])
		if err != nil {
			t.Fatalf("%s: nice %q: %v", p, f[16], err)
		}
		nices = append(nices, n)
	}
	return nices
}

// A service starts with its Nice value on every thread (the Go test
// service has several by the time it is ready), and init's own threads
// keep theirs.
func TestServiceNice(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: init applies nice only as root")
	}
	own := threadNices(t, os.Getpid())
	for _, nice := range []int{-5, 7} {
		t.Run(strconv.Itoa(nice), func(t *testing.T) {
			s := svc("niced", bootcfg.ReadyNotify, "-mode=steady")
			s.Nice = nice
			plain := svc("plain", bootcfg.ReadyNotify, "-mode=steady")
			sv, log := runSupervisor(t, &bootcfg.Config{Services: []bootcfg.Service{s, plain}})
			waitLine(t, log, "init: niced ready (")
			waitLine(t, log, "init: plain ready (")
			nices := threadNices(t, sv.byName["niced"].snapshotPID())
			if len(nices) < 2 {
				t.Errorf("niced has %d threads; the test wants a multi-threaded service", len(nices))
			}
			for _, n := range nices {
				if n != nice {
					t.Errorf("niced threads: nice %v, want all %d", nices, nice)
					break
				}
			}
			for _, n := range threadNices(t, sv.byName["plain"].snapshotPID()) {
				if n != own[0] {
					t.Errorf("plain service thread nice %d, want init's %d", n, own[0])
				}
			}
		})
	}
	for _, n := range threadNices(t, os.Getpid()) {
		if n != own[0] {
			t.Errorf("init's threads after the starts: nice %v, want %d", threadNices(t, os.Getpid()), own[0])
			break
		}
	}
}

// A one-shot whose SkipIfExists path exists is done without running (its
// dependents start); while the path is missing it runs.
func TestOneShotSkipIfExists(t *testing.T) {
	fls, err := lookPath("false")
	if err != nil {
		t.Skip(err)
	}
	dir := t.TempDir()
	marker := filepath.Join(dir, "applied")
	if err := os.WriteFile(marker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	// "false" would fail and be restarted: only the skip makes it done.
	once := bootcfg.Service{Name: "first-boot", Binary: fls, Readiness: bootcfg.ReadyExit, SkipIfExists: marker}
	user := svc("user", bootcfg.ReadyNotify, "-mode=steady")
	user.DependsOn = []string{"first-boot"}
	sv, log := runSupervisor(t, &bootcfg.Config{Services: []bootcfg.Service{once, user}})
	waitLine(t, log, "init: user ready (")
	if lineIndex(log.Lines(), "init: first-boot skipped: "+marker+" exists") < 0 {
		t.Fatalf("no skip line:\n%s", strings.Join(log.Lines(), "\n"))
	}
	if s := sv.snapshot()[0]; s.State != initstatus.StateDone || s.LastExit != "" {
		t.Fatalf("first-boot: %+v, want done without a run", s)
	}

	tru, err := lookPath("true")
	if err != nil {
		t.Skip(err)
	}
	runs := bootcfg.Service{Name: "first-boot", Binary: tru, Readiness: bootcfg.ReadyExit, SkipIfExists: filepath.Join(dir, "missing")}
	_, log = runSupervisor(t, &bootcfg.Config{Services: []bootcfg.Service{runs}})
	waitLine(t, log, "init: first-boot done (")
}

// A crash loop is N restarts within the window M: a service whose
// restarts come further apart than M is restarted on and on, the same
// service with a window that holds N of its restarts is marked failed.
func TestCrashLoopCountsOnlyRestartsInsideTheWindow(t *testing.T) {
	sh, err := lookPath("sh")
	if err != nil {
		t.Skip(err)
	}
	// Each run lasts 0.8 s and each back-off at least 250 ms: restarts
	// come at least 1.05 s apart, outside the shortest window bootcfg
	// allows (1 s).
	s := bootcfg.Service{Name: "slowcrash", Binary: sh, Args: []string{"-c", "sleep 0.8; exit 3"}, Readiness: bootcfg.ReadyStarted}
	t.Run("restarts further apart than the window", func(t *testing.T) {
		sv, log := runSupervisor(t, &bootcfg.Config{Services: []bootcfg.Service{s},
			CrashLoop: bootcfg.CrashLoop{Restarts: 2, Window: bootcfg.MinCrashLoopWindow}})
		waitLine(t, log, "init: slowcrash exited (status 3), restart 4 in 2s")
		if i := lineIndex(log.Lines(), "init: slowcrash: crash loop"); i >= 0 {
			t.Fatalf("marked a crash loop with its restarts outside the window: %s", log.Lines()[i])
		}
		if st := sv.snapshot()[0]; st.State == initstatus.StateFailed || st.Restarts < 4 {
			t.Fatalf("status %+v, want restarted on, not failed", st)
		}
	})
	t.Run("restarts inside the window", func(t *testing.T) {
		sv, log := runSupervisor(t, &bootcfg.Config{Services: []bootcfg.Service{s},
			CrashLoop: bootcfg.CrashLoop{Restarts: 2, Window: 30 * time.Second}})
		waitLine(t, log, "init: slowcrash: crash loop (2 restarts in 30s), marked failed")
		if st := sv.snapshot()[0]; st.State != initstatus.StateFailed || st.Restarts != 2 || !strings.HasPrefix(st.Reason, "crash loop: 2 restarts in 30s, last status 3") {
			t.Fatalf("status %+v, want failed after 2 restarts, the reason naming the loop", st)
		}
	})
}
