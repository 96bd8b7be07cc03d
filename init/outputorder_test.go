package main

import (
	"strings"
	"testing"

	"github.com/otgate/otgate/internal/bootcfg"
)

// A service's last output lines come before init's line about its exit:
// init logs the exit once the output pipe is drained (bounded by
// flushWait), not as soon as it reaps the process. A one-shot that
// writes a burst of lines and exits had init say "done" while most of
// its lines were still in the pipe (seen once in CI, where a status
// test then missed the output it had waited for).
func TestServiceOutputBeforeItsExit(t *testing.T) {
	sh, err := lookPath("sh")
	if err != nil {
		t.Skip(err)
	}
	script := `i=0; while [ $i -lt 400 ]; do echo "line $i of a burst that fills the pipe before the exit"; i=$((i+1)); done; echo "last words"`
	for _, r := range []string{bootcfg.ReadyExit, bootcfg.ReadyStarted} {
		row := bootcfg.Service{Name: "burst", Binary: sh, Args: []string{"-c", script}, Readiness: r}
		cfg := &bootcfg.Config{Services: []bootcfg.Service{row}, CrashLoop: bootcfg.CrashLoop{Restarts: 5, Window: 30e9}, StopGrace: 1e9}
		if err := cfg.Validate(nil); err != nil {
			t.Fatal(err)
		}
		_, log := runSupervisor(t, cfg)
		exit := "init: burst done ("
		if r != bootcfg.ReadyExit {
			exit = "init: burst exited"
		}
		i := waitLine(t, log, exit)
		lines := log.Lines()
		last := lineIndex(lines, "burst: last words")
		if last < 0 || last > i {
			t.Fatalf("readiness %s: the service's last line at %d, init's exit line at %d: want the output first:\n%s", r, last, i, strings.Join(lines[max(0, i-5):], "\n"))
		}
	}
}
