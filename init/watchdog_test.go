package main

import (
	"os"
	"testing"
	"time"

	"github.com/otgate/otgate/internal/bootcfg"
	"github.com/otgate/otgate/internal/initstatus"
)

// A critical service that reports HEALTHY=0 stops the petting; HEALTHY=1
// resumes it. The watchdog device is a pipe.
func TestWatchdogStopsWhileCriticalUnhealthy(t *testing.T) {
	sh, err := lookPath("sh")
	if err != nil {
		t.Skip(err)
	}
	dir := t.TempDir()
	flag := dir + "/healthy-again"
	script := `echo READY=1 >&3; sleep 0.3; echo "HEALTHY=0 uplink down" >&3; ` +
		`while [ ! -e ` + flag + ` ]; do sleep 0.05; done; echo HEALTHY=1 >&3; exec sleep 100`
	s := bootcfg.Service{Name: "gatekeeper", Binary: sh, Args: []string{"-c", script}, Readiness: bootcfg.ReadyNotify, Critical: true}
	sv, log := runSupervisor(t, &bootcfg.Config{Services: []bootcfg.Service{s}})

	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	pets := newPetCounter(r)
	wd := newWatchdog(log, w, "pipe", 300*time.Millisecond, sv.criticalHealthy)
	wd.run()

	waitLine(t, log, "init: gatekeeper unhealthy: uplink down")
	waitLine(t, log, "init: watchdog: not petting: gatekeeper unhealthy")
	if pet, _, note := wd.state(); pet || note != "gatekeeper unhealthy" {
		t.Fatalf("watchdog state petting=%v note=%q", pet, note)
	}
	before := pets.settled(t, "no pets while the service was starting and ready")
	time.Sleep(4 * wd.interval)
	if n := pets.count() - before; n != 0 {
		t.Fatalf("%d pets while a critical service was unhealthy", n)
	}
	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitLine(t, log, "init: gatekeeper healthy again")
	waitLine(t, log, "init: watchdog: petting again")
	waitState(t, sv, "gatekeeper", initstatus.StateReady)
	if err := wd.close(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(waitTimeout)
	for !pets.sawMagicClose() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !pets.sawMagicClose() {
		t.Fatal("no magic close")
	}
}

func TestCriticalHealthy(t *testing.T) {
	cfg := &bootcfg.Config{Services: []bootcfg.Service{
		{Name: "a", Readiness: bootcfg.ReadyStarted, Critical: true},
		{Name: "b", Readiness: bootcfg.ReadyStarted},
	}}
	sv, err := newSupervisor(cfg, newLogger(), nil, spawnOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		a, b string
		ok   bool
	}{
		{initstatus.StateWaiting, initstatus.StateFailed, true},
		{initstatus.StateStarting, initstatus.StateFailed, true},
		{initstatus.StateReady, initstatus.StateBackoff, true},
		{initstatus.StateDone, initstatus.StateFailed, true},
		{initstatus.StateUnhealthy, initstatus.StateReady, false},
		{initstatus.StateBackoff, initstatus.StateReady, false},
		{initstatus.StateFailed, initstatus.StateReady, false},
		{initstatus.StateStopped, initstatus.StateReady, false},
	} {
		sv.byName["a"].state, sv.byName["b"].state = tc.a, tc.b
		if ok, why := sv.criticalHealthy(); ok != tc.ok {
			t.Errorf("critical a %s, b %s: healthy %v (%s), want %v", tc.a, tc.b, ok, why, tc.ok)
		}
	}
	// Starting and waiting are healthy for a bounded time only: a
	// process the readiness timeout's SIGKILL does not end (stuck in the
	// kernel) stays starting, a dependency that never comes up keeps its
	// dependant waiting.
	a := sv.byName["a"]
	for _, tc := range []struct {
		state string
		ago   time.Duration
		why   string
	}{
		{initstatus.StateStarting, defaultReadyTimeout + killWait - time.Second, ""},
		{initstatus.StateStarting, defaultReadyTimeout + killWait + time.Second, "a starting for over 35s, not ready"},
		{initstatus.StateWaiting, a.waitLimit - time.Second, ""},
		{initstatus.StateWaiting, a.waitLimit + time.Second, "a waiting for over 1m0s"},
	} {
		a.state, a.since = tc.state, time.Now().Add(-tc.ago)
		if ok, why := sv.criticalHealthy(); ok != (tc.why == "") || why != tc.why {
			t.Errorf("a %s for %s: healthy %v (%q), want %q", tc.state, tc.ago, ok, why, tc.why)
		}
	}
}

// A watchdog timeout outside bootcfg's bounds never reaches the petting
// loop: bootcfg refuses it at load (TestHostInitBadConfig), and one that
// got past (a config not loaded by bootcfg) is refused again with the
// default used, never a petting interval of 0 (that panicked and ended
// PID 1) or a busy loop.
func TestWatchdogTimeoutFallsBack(t *testing.T) {
	for _, tc := range []struct {
		in, want time.Duration
		err      string
	}{
		{0, 30 * time.Second, ""},
		{600 * time.Millisecond, 600 * time.Millisecond, ""},
		{10 * time.Second, 10 * time.Second, ""},
		{2, 30 * time.Second, "watchdog timeout 2ns is outside 100ms to 10m0s; using 30s"},
		{-time.Second, 30 * time.Second, "watchdog timeout -1s is outside 100ms to 10m0s; using 30s"},
		{time.Hour, 30 * time.Second, "watchdog timeout 1h0m0s is outside 100ms to 10m0s; using 30s"},
	} {
		got, err := watchdogTimeout(tc.in)
		if got != tc.want || (tc.err == "") != (err == nil) || err != nil && err.Error() != tc.err {
			t.Errorf("watchdogTimeout(%s) = %s, %v; want %s, %q", tc.in, got, err, tc.want, tc.err)
		}
	}
}
