package qemu

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Diagnose describes what the VM's processes are doing, for a failure
// message when a boot stalls: how long QEMU has run and how much console
// output came (none at all means the guest never reached its console, or
// QEMU never ran it); QEMU's run state by QMP (no answer within 2 s: its
// main loop is blocked); each QEMU and swtpm thread's state (R running, S
// sleeping, D in the kernel, T stopped, Z exited), CPU time and the kernel
// function it waits in; swtpm's exit status if it ended; the end of
// swtpm's log (the control commands QEMU sent it) and of QEMU's and
// swtpm's standard error. A QEMU thread stuck in a read while swtpm
// sleeps, or a stopped swtpm, shows the TPM holding the boot up (QEMU
// talks to swtpm synchronously, holding its global lock).
//
// It starts with the guest kernel's own reports of a fault (KernelFaults):
// a CPU stuck in the kernel says the boot stalled inside the guest, not in
// QEMU or swtpm.
func (vm *VM) Diagnose() string {
	var b strings.Builder
	if vm.cmd == nil || vm.cmd.Process == nil {
		return "qemu: not started"
	}
	n, last := vm.con.output()
	fmt.Fprintf(&b, "qemu: %s pid %d, started %s ago; console: %d bytes", vm.Board.Name, vm.PID(), time.Since(vm.started).Round(time.Millisecond), n)
	if n > 0 {
		fmt.Fprintf(&b, ", the last %s ago", time.Since(last).Round(time.Millisecond))
	} else {
		b.WriteString(" (none at all)")
	}
	b.WriteByte('\n')
	for _, l := range KernelFaults(vm.Lines()) {
		fmt.Fprintf(&b, "qemu: the guest kernel reported: %s\n", l)
	}
	select {
	case <-vm.done:
		fmt.Fprintf(&b, "qemu: exited: %s\n", vm.exit)
	default:
		if q := vm.qmpClient(); q != nil {
			b.WriteString(queryStatus(q))
		}
		b.WriteString(threads("qemu", vm.PID()))
	}
	if vm.tpm != nil {
		if e := vm.tpm.exited(); e != "" {
			fmt.Fprintf(&b, "swtpm: pid %d exited: %s\n", vm.tpm.pid(), e)
		} else {
			b.WriteString(threads("swtpm", vm.tpm.pid()))
		}
		fmt.Fprintf(&b, "swtpm: log %s ends:\n%s\n", vm.tpm.log, indent(vm.tpm.logTail(15)))
		if s := strings.TrimSpace(vm.tpm.stderr.String()); s != "" {
			fmt.Fprintf(&b, "swtpm: stderr:\n%s\n", indent(s))
		}
	}
	if s := strings.TrimSpace(vm.stderr.String()); s != "" {
		fmt.Fprintf(&b, "qemu: stderr:\n%s\n", indent(tailLines(s, 15)))
	}
	return strings.TrimRight(b.String(), "\n")
}

// queryStatus asks QEMU for its run state, waiting at most 2 s (also
// when another QMP command is in flight).
func queryStatus(q *qmpClient) string {
	type result struct {
		st  []byte
		err error
	}
	ch := make(chan result, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	go func() {
		defer cancel()
		st, err := q.execute(ctx, "query-status", nil)
		ch <- result{st, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			return fmt.Sprintf("qemu: QMP query-status: %v\n", r.err)
		}
		return fmt.Sprintf("qemu: QMP query-status: %s\n", r.st)
	case <-time.After(2 * time.Second):
		return "qemu: QMP query-status: no answer within 2 s: QEMU's main loop is blocked (or another QMP command is)\n"
	}
}

// threads describes each thread of pid: name, state, CPU time, wait
// channel.
func threads(what string, pid int) string {
	dirs, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*", pid))
	if len(dirs) == 0 {
		return fmt.Sprintf("%s: pid %d: no such process\n", what, pid)
	}
	sort.Slice(dirs, func(i, j int) bool {
		a, _ := strconv.Atoi(filepath.Base(dirs[i]))
		c, _ := strconv.Atoi(filepath.Base(dirs[j]))
		return a < c
	})
	var b strings.Builder
	fmt.Fprintf(&b, "%s: pid %d, %d threads:\n", what, pid, len(dirs))
	for _, d := range dirs {
		stat, err := os.ReadFile(d + "/stat")
		if err != nil {
			continue
		}
		name, state, cpu := parseStat(string(stat))
		wchan, _ := os.ReadFile(d + "/wchan")
		w := string(wchan)
		if w == "" || w == "0" {
			w = "-"
		}
		fmt.Fprintf(&b, "  %s %-16s %s cpu %-8s wchan %s\n", filepath.Base(d), name, state, cpu, w)
	}
	return b.String()
}

// clockTicks is USER_HZ, the unit of /proc/*/stat CPU times (100 on
// every Linux architecture the harness runs on).
const clockTicks = 100

// parseStat returns the name, the state (with a word) and the CPU time
// (user+system) of a /proc/<pid>/stat line.
func parseStat(s string) (name, state, cpu string) {
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return "?", "?", "?"
	}
	name = s[open+1 : end]
	f := strings.Fields(s[end+1:])
	if len(f) < 13 {
		return name, "?", "?"
	}
	words := map[string]string{"R": "running", "S": "sleeping", "D": "disk/uninterruptible", "T": "STOPPED", "t": "TRACED", "Z": "zombie", "I": "idle"}
	state = f[0]
	if w, ok := words[state]; ok {
		state += " (" + w + ")"
	}
	// Fields 14 and 15 of stat (utime, stime) are f[11] and f[12].
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	cpu = (time.Duration(ut+st) * time.Second / clockTicks).String()
	return name, state, cpu
}

func indent(s string) string { return "  " + strings.ReplaceAll(s, "\n", "\n  ") }

func tailLines(s string, n int) string {
	l := strings.Split(s, "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// kernelFaultRE matches the first line of the guest kernel's reports of a
// fault, after its timestamp: a soft lockup (a CPU that has not scheduled
// for 2 x watchdog_thresh; the boards make it a panic, softlockup_panic=1,
// whose stack the console shows), an RCU stall, a panic, an oops.
var kernelFaultRE = regexp.MustCompile(`^\[\s*\d+\.\d+\] (.*(?:BUG: soft lockup - CPU#\d+ stuck|rcu: INFO: rcu_\w+ detected stalls|Kernel panic - not syncing|BUG: unable to handle|general protection fault|Oops: ).*)$`)

// KernelFaults returns the console lines that report a guest kernel
// fault (at most 8, timestamps dropped).
func KernelFaults(lines []string) []string {
	var out []string
	for _, l := range lines {
		if m := kernelFaultRE.FindStringSubmatch(l); m != nil {
			out = append(out, m[1])
			if len(out) == 8 {
				break
			}
		}
	}
	return out
}
