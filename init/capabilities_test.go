package main

import (
	"os"
	"os/exec"
	"testing"

	"github.com/otgate/otgate/internal/bootcfg"
)

// A service running as an unprivileged uid gets exactly the ambient
// capabilities its row names (the proxy's CAP_NET_RAW for SO_MARK), and
// one without Capabilities gets none.
func TestAmbientCapabilities(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (switching to uid 101)")
	}
	grep, err := exec.LookPath("grep")
	if err != nil {
		t.Skip("no grep")
	}
	row := func(name string, caps ...string) bootcfg.Service {
		return bootcfg.Service{Name: name, Binary: grep, Args: []string{"^CapAmb", "/proc/self/status"},
			Readiness: bootcfg.ReadyExit, UID: 101, GID: 101, Capabilities: caps}
	}
	cfg := &bootcfg.Config{Services: []bootcfg.Service{row("withraw", "CAP_NET_RAW"), row("without")},
		CrashLoop: bootcfg.CrashLoop{Restarts: 5, Window: 30e9}, StopGrace: 1e9}
	_, log := runSupervisor(t, cfg)
	waitLine(t, log, "withraw: CapAmb:\t0000000000002000") // bit 13
	waitLine(t, log, "without: CapAmb:\t0000000000000000")
}

func TestCapabilitiesValidated(t *testing.T) {
	for _, tc := range []struct {
		name string
		svc  bootcfg.Service
	}{
		{"unknown", bootcfg.Service{Name: "a", Binary: "/bin/a", Readiness: bootcfg.ReadyStarted, UID: 101, Capabilities: []string{"CAP_SYS_ADMIN"}}},
		{"root", bootcfg.Service{Name: "a", Binary: "/bin/a", Readiness: bootcfg.ReadyStarted, Capabilities: []string{"CAP_NET_RAW"}}},
	} {
		cfg := &bootcfg.Config{Services: []bootcfg.Service{tc.svc}}
		if err := cfg.Validate(nil); err == nil {
			t.Errorf("%s: Validate accepted capabilities %v for uid %d", tc.name, tc.svc.Capabilities, tc.svc.UID)
		}
	}
}
