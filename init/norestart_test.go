package main

import (
	"strings"
	"testing"
	"time"

	"github.com/otgate/otgate/internal/bootcfg"
	"github.com/otgate/otgate/internal/initstatus"
)

// A one-shot that exits bootcfg.ExitNoRestart is failed at once with its
// STATUS note, is not restarted, and what depends on it never starts,
// while the rest keeps running.
func TestExitNoRestartFailsWithoutRetryAndBlocksDependents(t *testing.T) {
	gate := svc("gate", bootcfg.ReadyExit, "-mode=refuse", "-note=QUARANTINE: PCR 15 differs")
	proxy := svc("proxy", bootcfg.ReadyNotify, "-mode=steady")
	proxy.DependsOn = []string{"gate"}
	core := svc("core", bootcfg.ReadyNotify, "-mode=steady")
	core.Critical = true
	cfg := &bootcfg.Config{CrashLoop: bootcfg.CrashLoop{Restarts: 5, Window: 30 * time.Second},
		Services: []bootcfg.Service{core, gate, proxy}}
	sv, log := runSupervisor(t, cfg)
	waitState(t, sv, "gate", initstatus.StateFailed)
	waitLine(t, log, "init: proxy: not started: dependency gate failed")
	waitState(t, sv, "core", initstatus.StateReady)
	time.Sleep(time.Second) // a wrong restart would show by now (back-off starts at 250ms)
	for _, s := range sv.snapshot() {
		switch s.Name {
		case "gate":
			if s.Restarts != 0 || s.Reason != "QUARANTINE: PCR 15 differs" || s.LastExit != "status 100" {
				t.Errorf("gate: %+v", s)
			}
		case "proxy":
			if s.State != initstatus.StateFailed || s.PID != 0 {
				t.Errorf("proxy: %+v", s)
			}
		}
	}
	lines := strings.Join(log.Lines(), "\n")
	if !strings.Contains(lines, "init: gate exited (status 100), asks not to be restarted: marked failed: QUARANTINE: PCR 15 differs") {
		t.Errorf("no failure line:\n%s", lines)
	}
	if strings.Contains(lines, "gate exited (status 100), restart") {
		t.Errorf("gate was restarted:\n%s", lines)
	}
}

// A critical service held back by a deliberate refusal (quarantine) does
// not stop the watchdog: the gate is in its fail-closed state, and a
// reset would only come back to the same decision. A critical service
// that failed by crashing still does.
func TestHeldCriticalKeepsWatchdogPetted(t *testing.T) {
	gate := svc("gate", bootcfg.ReadyExit, "-mode=refuse", "-note=QUARANTINE: PCR 15 differs")
	proxy := svc("proxy", bootcfg.ReadyNotify, "-mode=steady")
	proxy.DependsOn = []string{"gate"}
	proxy.Critical = true
	crash := svc("crash", bootcfg.ReadyNotify, "-mode=crash")
	cfg := &bootcfg.Config{CrashLoop: bootcfg.CrashLoop{Restarts: 2, Window: 30 * time.Second},
		Services: []bootcfg.Service{gate, proxy, crash}}
	sv, log := runSupervisor(t, cfg)
	waitLine(t, log, "init: proxy: not started: dependency gate failed")
	if ok, why := sv.criticalHealthy(); !ok {
		t.Fatalf("held critical proxy stops the watchdog: %s", why)
	}

	crash2 := svc("crash", bootcfg.ReadyNotify, "-mode=crash")
	crash2.Critical = true
	cfg2 := &bootcfg.Config{CrashLoop: bootcfg.CrashLoop{Restarts: 2, Window: 30 * time.Second},
		Services: []bootcfg.Service{crash2}}
	sv2, _ := runSupervisor(t, cfg2)
	waitState(t, sv2, "crash", initstatus.StateFailed)
	if ok, _ := sv2.criticalHealthy(); ok {
		t.Fatal("a crash-looped critical service keeps the watchdog petted")
	}
}
