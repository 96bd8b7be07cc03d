package bench

import (
	"strings"
	"testing"
)

// The stage times come from init's own console lines (these from a boot
// of the qemu-x86_64 image); a line that changes its words must show up
// here, not as a stage quietly missing from the benchmark's output.
func TestStagesFromInitsConsole(t *testing.T) {
	boot := func(start, modules, wait, identity, ready string) []string {
		return []string{
			"[    0.000000] Linux version 6.1.0",
			"init: otgate init: board qemu-x86_64, image adcbed2e90a4, 8 services (started " + start + "s after boot)",
			"init: loaded 36 of 36 modules (" + modules + "s, 2 at a time)",
			"init: measured boot into PCR 15 (2993257a9ba1b0d8, " + wait + "s)",
			"identity: identity: serving on /run/otgate/identity.sock (started: tpm 0.00s, unseal 0.21s)",
			"init: identity ready (" + identity + "s, cpu 0.43s)",
			"init: trust done (0.67s)",
			"init: ready (8 services, " + ready + "s after boot, CPUs 92% busy since init started)",
		}
	}
	s := stages{}
	s.add(boot("3.00", "0.70", "0.30", "0.65", "5.50"))
	s.add(boot("3.20", "0.80", "0.10", "0.70", "5.60"))
	s.add(boot("2.90", "0.60", "0.05", "0.60", "6.00"))
	got := s.String()
	for _, want := range []string{"kernel to init 3.00s", "modules 0.70s", "wait for the measurement's hashes 0.10s",
		"init to ready 2.50s", "service identity 0.65s"} {
		if !strings.Contains(got, want) {
			t.Errorf("stages %q lack %q", got, want)
		}
	}
	if strings.Contains(got, "not printed") || strings.Contains(got, "service trust") {
		t.Errorf("stages %q: a stage missing or a wrong line taken", got)
	}
	if missing := (stages{}).String(); !strings.Contains(missing, "modules not printed") {
		t.Errorf("no boots: %q", missing)
	}
}
