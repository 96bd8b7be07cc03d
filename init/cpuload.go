package main

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
)

// cpuTimes is the first line of /proc/stat: busy and total jiffies summed
// over every CPU.
type cpuTimes struct{ busy, total uint64 }

// readCPUTimes parses /proc/stat under root; the zero value when it
// cannot.
func readCPUTimes(root string) cpuTimes {
	b, err := os.ReadFile(root + "/proc/stat")
	if err != nil {
		return cpuTimes{}
	}
	t, _ := parseCPUTimes(b)
	return t
}

// parseCPUTimes reads "cpu  user nice system idle iowait irq softirq
// steal ...": idle and iowait are not busy; guest time is already part
// of user.
func parseCPUTimes(stat []byte) (cpuTimes, bool) {
	line, _, _ := bytes.Cut(stat, []byte("\n"))
	f := bytes.Fields(line)
	if len(f) < 5 || string(f[0]) != "cpu" {
		return cpuTimes{}, false
	}
	var t cpuTimes
	for i, s := range f[1:] {
		if i >= 8 { // guest, guest_nice: counted in user and nice
			break
		}
		v, err := strconv.ParseUint(string(s), 10, 64)
		if err != nil {
			return cpuTimes{}, false
		}
		t.total += v
		if i != 3 && i != 4 {
			t.busy += v
		}
	}
	return t, true
}

// busySince says how busy the CPUs were between then and now, e.g.
// ", CPUs 93% busy since init started"; "" when either is unknown (zero).
func busySince(then, now cpuTimes) string {
	if then.total == 0 || now.total <= then.total || now.busy < then.busy {
		return ""
	}
	return fmt.Sprintf(", CPUs %d%% busy since init started", 100*(now.busy-then.busy)/(now.total-then.total))
}
