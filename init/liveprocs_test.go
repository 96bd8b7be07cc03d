package main

import (
	"os"
	"os/exec"
	"slices"
	"strconv"
	"testing"
	"time"
)

// liveUserProcesses finds a running process and leaves out kernel threads
// and zombies: shutdown waits on exactly the processes that can still hold
// /perm busy.
func TestLiveUserProcesses(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	if left := liveUserProcesses("/proc"); !slices.Contains(left, cmd.Process.Pid) {
		t.Fatalf("running sleep %d not among %v", cmd.Process.Pid, left)
	}
	// kthreadd (PID 2) is a kernel thread.
	if left := liveUserProcesses("/proc"); slices.Contains(left, 2) {
		t.Fatalf("kernel thread 2 among %v", left)
	}
	// Killed and not yet reaped: a zombie, no longer live.
	cmd.Process.Kill()
	deadline := time.Now().Add(5 * time.Second)
	for slices.Contains(liveUserProcesses("/proc"), cmd.Process.Pid) {
		if time.Now().After(deadline) {
			b, _ := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/stat")
			t.Fatalf("killed sleep still live: %s", b)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, tc := range []struct {
		stat string
		live bool
	}{
		{"123 (sleep) S 1 123 123 0 -1 4194304 100 0 0 0", true},
		{"123 (a) b) (c) R 1 123 123 0 -1 4194560 100 0 0 0", true},
		{"123 (sleep) Z 1 123 123 0 -1 4194316 100 0 0 0", false},
		{"2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0", false},
		{"garbage", false},
	} {
		if got := liveUserStat(tc.stat); got != tc.live {
			t.Errorf("liveUserStat(%q) = %v, want %v", tc.stat, got, tc.live)
		}
	}
}
