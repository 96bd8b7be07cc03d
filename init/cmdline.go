package main

import (
	"os"
	"strings"
)

// kernelCmdline reads the kernel command line into key=value pairs (a bare
// word maps to "").
func parseCmdline(s string) map[string]string {
	m := map[string]string{}
	for _, f := range strings.Fields(s) {
		k, v, _ := strings.Cut(f, "=")
		m[k] = v
	}
	return m
}

func readCmdline(path string) map[string]string {
	b, err := os.ReadFile(path)
	if err != nil {
		return map[string]string{}
	}
	return parseCmdline(string(b))
}

// Test hooks on the kernel command line (honoured only when the boot config
// has TestHooks set).
const hookStopWatchdog = "otgate.test.stop_watchdog"
