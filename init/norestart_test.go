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
