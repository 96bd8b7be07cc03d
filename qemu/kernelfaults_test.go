package qemu

import (
	"reflect"
	"testing"
)

// The lines are from a qemu-x86_64 boot whose first CPU spun in a kworker
// at power-off (2026-11-23), and the panic softlockup_panic=1 makes of it.
func TestKernelFaults(t *testing.T) {
	lines := []string{
		"init: segment stopped (0.01s)",
		"init: powering off",
		"[   52.667396] watchdog: BUG: soft lockup - CPU#0 stuck for 45s! [kworker/0:1:17]",
		"[   52.670001] Kernel panic - not syncing: softlockup: hung tasks",
		"[   52.670100] CPU: 0 PID: 17 Comm: kworker/0:1 Tainted: G             L     6.1.0-56-amd64 #1  Debian 6.1.192-2",
		"[   24.713693] rcu: INFO: rcu_sched detected stalls on CPUs/tasks:",
		"proxy: audit: BUG: soft lockup - CPU#0 stuck for 45s!", // not the kernel's
	}
	want := []string{
		"watchdog: BUG: soft lockup - CPU#0 stuck for 45s! [kworker/0:1:17]",
		"Kernel panic - not syncing: softlockup: hung tasks",
		"rcu: INFO: rcu_sched detected stalls on CPUs/tasks:",
	}
	if got := KernelFaults(lines); !reflect.DeepEqual(got, want) {
		t.Errorf("KernelFaults =\n%q\nwant\n%q", got, want)
	}
	if got := KernelFaults([]string{"init: ready (1.2s)", "[    0.000000] Linux version 6.1.0-56-amd64"}); got != nil {
		t.Errorf("a clean boot: %q", got)
	}
}
