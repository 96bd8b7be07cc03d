package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// userHZ is the unit of /proc/<pid>/stat's times: USER_HZ, 100 on every
// Linux architecture the gate runs on.
const userHZ = 100

// procCPU is the CPU time (user + system) process pid has used so far,
// from /proc/<pid>/stat under procDir.
func procCPU(procDir string, pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("%s/%d/stat", procDir, pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces:
	// the fields that follow start after the last ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, fmt.Errorf("%s/%d/stat: no command name", procDir, pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("%s/%d/stat: %d fields after the command name, want at least 13", procDir, pid, len(f))
	}
	var ticks uint64
	for _, s := range f[11:13] { // utime, stime: fields 14 and 15
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s/%d/stat: %w", procDir, pid, err)
		}
		ticks += v
	}
	return time.Duration(ticks) * time.Second / userHZ, nil
}

// cpuNote is ", cpu 0.42s" for the ready line of a running service, or ""
// when its CPU time cannot be read.
func cpuNote(procDir string, pid int) string {
	if pid <= 0 {
		return ""
	}
	d, err := procCPU(procDir, pid)
	if err != nil {
		return ""
	}
	return ", cpu " + secs(d)
}
