package qemu

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// A per-VM directory records its owner (pid and process start time). A
// process killed outright cannot remove its directories; the next Start
// removes those whose owner is gone.

const ownerFile = "owner"

// processStart returns the start time (in clock ticks since boot) of pid,
// which together with the pid identifies a process despite pid reuse.
func processStart(pid int) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", err
	}
	s := string(b)
	// The command name (field 2) may hold spaces: split after its ')'.
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return "", fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return "", fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	return f[19], nil // field 22: starttime
}

func writeOwner(dir string) error {
	start, err := processStart(os.Getpid())
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, ownerFile), []byte(fmt.Sprintf("%d %s\n", os.Getpid(), start)), 0o644)
}

// ownerAlive reports whether the process that created dir still runs. A
// directory without a readable owner record counts as alive (it may be
// being created right now).
func ownerAlive(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, ownerFile))
	if err != nil {
		return true
	}
	var pid int
	var start string
	if _, err := fmt.Sscanf(string(b), "%d %s", &pid, &start); err != nil {
		return true
	}
	now, err := processStart(pid)
	return err == nil && now == start
}

// sweepStale removes per-VM directories whose owner process is gone.
func sweepStale() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "otgate-qemu-*"))
	for _, d := range dirs {
		if !ownerAlive(d) {
			_ = os.RemoveAll(d)
		}
	}
}
