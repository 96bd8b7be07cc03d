package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// procCPU reads a real process's CPU time: a busy child has used some,
// and never more than the wall time since it started (it is single
// threaded); a missing process and a malformed stat file are errors.
func TestProcCPU(t *testing.T) {
	cmd := exec.Command("sh", "-c", "while :; do :; done")
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	var used time.Duration
	for deadline := time.Now().Add(30 * time.Second); used < 50*time.Millisecond && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		var err error
		if used, err = procCPU("/proc", cmd.Process.Pid); err != nil {
			t.Fatal(err)
		}
	}
	if used < 50*time.Millisecond || used > time.Since(start)+10*time.Millisecond {
		t.Errorf("busy child used %v of CPU in %v", used, time.Since(start))
	}
	if note := cpuNote("/proc", cmd.Process.Pid); !strings.HasPrefix(note, ", cpu ") {
		t.Errorf("cpuNote = %q", note)
	}

	dir := t.TempDir()
	if _, err := procCPU(dir, 4242); err == nil {
		t.Error("procCPU(missing process) = nil error")
	}
	os.MkdirAll(filepath.Join(dir, "7"), 0o755)
	os.WriteFile(filepath.Join(dir, "7", "stat"), []byte("7 (a) b) S 1 2"), 0o644)
	if _, err := procCPU(dir, 7); err == nil || !strings.Contains(err.Error(), "fields after the command name") {
		t.Errorf("procCPU(short stat) = %v", err)
	}
	if cpuNote(dir, 7) != "" || cpuNote(dir, 0) != "" {
		t.Error("cpuNote of an unreadable process is not empty")
	}
}
