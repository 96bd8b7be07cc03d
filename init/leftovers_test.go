package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/otgate/otgate/internal/bootcfg"
	"github.com/otgate/otgate/internal/initstatus"
)

// pidsIn reads the pids a test service appended to path, one a line, and
// kills them when the test ends whatever happened.
func pidsIn(t *testing.T, path string) []int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			t.Fatalf("%s: %q", path, f)
		}
		pids = append(pids, pid)
		t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	}
	return pids
}

// gone says whether pid has exited (no such process, or a zombie).
func gone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	// "pid (comm) S ...": the state follows the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] == 'Z' || s[i+2] == 'X'
}

func waitGone(t *testing.T, pids []int, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for _, pid := range pids {
		for !gone(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: process %d is still running", what, pid)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// A service that exits (crashes) leaving a child in its process group:
// the child is killed before the next instance starts, and with the last
// instance of a crash loop, instead of running on beside it.
func TestCrashedServiceLeavesNoProcesses(t *testing.T) {
	sh, err := lookPath("sh")
	if err != nil {
		t.Skip(err)
	}
	pidFile := filepath.Join(t.TempDir(), "pids")
	s := bootcfg.Service{Name: "forker", Binary: sh, Readiness: bootcfg.ReadyStarted,
		Args: []string{"-c", "sleep 300 & echo $! >> " + pidFile + "; exit 3"}}
	sv, log := runSupervisor(t, &bootcfg.Config{Services: []bootcfg.Service{s},
		CrashLoop: bootcfg.CrashLoop{Restarts: 1, Window: time.Minute}})
	waitState(t, sv, "forker", initstatus.StateFailed)
	pids := pidsIn(t, pidFile)
	if len(pids) != 2 {
		t.Fatalf("%d starts, want 2", len(pids))
	}
	waitGone(t, pids, "child of a crashed service")
	waitLine(t, log, "init: forker: killed the processes it left behind (process group ")
}

// A service stopped at shutdown whose main process exits on SIGTERM while
// a child of it ignores SIGTERM: the child is killed too once the grace
// is over, not left running past the stop.
func TestStoppedServiceLeavesNoProcesses(t *testing.T) {
	sh, err := lookPath("sh")
	if err != nil {
		t.Skip(err)
	}
	pidFile := filepath.Join(t.TempDir(), "pids")
	s := bootcfg.Service{Name: "parent", Binary: sh, Readiness: bootcfg.ReadyNotify,
		Args: []string{"-c", "(trap '' TERM; exec sleep 300) & echo $! >> " + pidFile + "; echo READY=1 >&3; wait"}}
	sv, log := runSupervisor(t, &bootcfg.Config{Services: []bootcfg.Service{s}, StopGrace: time.Second})
	waitState(t, sv, "parent", initstatus.StateReady)
	pids := pidsIn(t, pidFile)
	sv.stopAll()
	if lineIndex(log.Lines(), "init: parent: still running after") >= 0 {
		t.Fatal("the main process did not exit on SIGTERM")
	}
	waitGone(t, pids, "child of a stopped service")
	waitLine(t, log, "init: parent: killed the processes it left behind (process group ")
}
