package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/otgate/otgate/internal/bootcfg"
)

// testsvcBin and initBin are built once, before any test starts a reaper
// (the reaper must not race with os/exec's Wait).
var testsvcBin, initBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "otgate-init-test")
	if err != nil {
		panic(err)
	}
	testsvcBin = filepath.Join(dir, "testsvc")
	initBin = filepath.Join(dir, "init")
	for bin, pkg := range map[string]string{testsvcBin: "../internal/testsvc", initBin: "."} {
		out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n%s", pkg, err, out)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// waitTimeout is generous: the machine may be busy with QEMU and builds.
const waitTimeout = 60 * time.Second

// svc is a service row running testsvc.
func svc(name, readiness string, args ...string) bootcfg.Service {
	return bootcfg.Service{Name: name, Binary: testsvcBin, Args: args, Readiness: readiness}
}

// runSupervisor starts a supervisor for cfg in this process and stops it at
// the end of the test.
func runSupervisor(t *testing.T, cfg *bootcfg.Config) (*supervisor, *logger) {
	t.Helper()
	return runSupervisorWith(t, cfg, nil)
}

// runSupervisorWith is runSupervisor with the supervisor changed by tune
// (its back-off, say) before it starts; nil: unchanged.
func runSupervisorWith(t *testing.T, cfg *bootcfg.Config, tune func(*supervisor)) (*supervisor, *logger) {
	t.Helper()
	if err := cfg.Validate(nil); err != nil {
		t.Fatal(err)
	}
	log := newLogger(newTestWriter(t))
	r := newReaper(log, false)
	r.run()
	sv, err := newSupervisor(cfg, log, r, spawnOptions{deathSignal: syscall.SIGKILL})
	if err != nil {
		t.Fatal(err)
	}
	if tune != nil {
		tune(sv)
	}
	sv.start()
	t.Cleanup(func() {
		sv.stopAll()
		r.stop()
	})
	return sv, log
}

// testWriter passes init's log lines to the test's log until the test
// ends. A service's output can outlive the test by a moment (its pipe
// held by a process that left the group: init drains it for up to 1 s),
// and t.Log from that goroutine while the test finishes is a data race
// (seen once in the race pass): past the test's cleanups, lines are
// dropped.
type testWriter struct{ l *testLog }

type testLog struct {
	mu   sync.Mutex
	t    *testing.T
	done bool
}

// newTestWriter is t's writer. Its cleanup is registered first, so it
// runs after those of what the test starts with it (supervisors, reapers).
func newTestWriter(t *testing.T) testWriter {
	l := &testLog{t: t}
	t.Cleanup(func() {
		l.mu.Lock()
		l.done = true
		l.mu.Unlock()
	})
	return testWriter{l}
}

func (w testWriter) Write(b []byte) (int, error) {
	w.l.mu.Lock()
	defer w.l.mu.Unlock()
	if !w.l.done {
		w.l.t.Log(strings.TrimRight(string(b), "\n"))
	}
	return len(b), nil
}

// waitLine waits for a log line starting with prefix and returns its
// index in the ring.
func waitLine(t *testing.T, log *logger, prefix string) int {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for time.Now().Before(deadline) {
		if i := lineIndex(log.Lines(), prefix); i >= 0 {
			return i
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no log line %q after %s; log:\n%s", prefix, waitTimeout, strings.Join(log.Lines(), "\n"))
	return -1
}

func lineIndex(lines []string, prefix string) int {
	for i, l := range lines {
		if strings.HasPrefix(l, prefix) {
			return i
		}
	}
	return -1
}

// waitState waits until service name is in state.
func waitState(t *testing.T, sv *supervisor, name, state string) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for time.Now().Before(deadline) {
		if sv.byName[name].getState() == state {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s: state %s, want %s after %s", name, sv.byName[name].getState(), state, waitTimeout)
}
