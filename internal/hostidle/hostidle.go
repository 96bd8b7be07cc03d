// Package hostidle describes how the machine's CPUs idle, for benchmark
// output. On a VM a relay's added latency is mostly the wake-up of a vCPU
// that went idle between two packets, and what that costs depends on
// the guest kernel's cpuidle driver and its halt polling (how long an
// idle vCPU polls before it halts, which exits to the hypervisor): the
// same relay adds ~50-80 us per exchange on a machine that halts at once
// and ~30 us with Linux's default 200 us of halt polling (docs/STATUS.md).
// Figures are only comparable between machines with the same setting.
package hostidle

import (
	"fmt"
	"os"
	"strings"
)

// Paths read by Describe (variables for tests).
var (
	driverPath   = "/sys/devices/system/cpu/cpuidle/current_driver"
	governorPath = "/sys/devices/system/cpu/cpuidle/current_governor_ro"
	haltPollPath = "/sys/module/haltpoll/parameters/guest_halt_poll_ns"
)

// Describe returns one line naming the cpuidle driver and governor and,
// with the haltpoll driver, the guest halt polling time.
func Describe() string {
	driver := read(driverPath)
	if driver == "" {
		return "cpuidle: no driver reported (" + driverPath + " unreadable)"
	}
	s := "cpuidle: driver " + driver
	if g := read(governorPath); g != "" {
		s += ", governor " + g
	}
	if driver == "haltpoll" {
		switch ns := read(haltPollPath); ns {
		case "":
		case "0":
			s += ", guest halt polling off (an idle vCPU halts at once; every wake-up is a VM exit)"
		default:
			s += fmt.Sprintf(", guest halt polling %s ns", ns)
		}
	}
	return s
}

func read(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
