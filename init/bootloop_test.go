package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/otgate/otgate/internal/bootcfg"
)

// bootWithUnready runs init on this host with a critical service in mode
// and a FIFO watchdog, /perm/init/unready saying prev boots in a row
// did not reach ready.
func bootWithUnready(t *testing.T, prev, mode string) (*hostInit, *petCounter, string) {
	t.Helper()
	core := svc("core", bootcfg.ReadyNotify, "-mode="+mode)
	core.Critical = true
	cfg := &bootcfg.Config{Services: []bootcfg.Service{core},
		CrashLoop: bootcfg.CrashLoop{Restarts: 1, Window: time.Minute},
		Watchdog:  bootcfg.Watchdog{Device: "/dev/watchdog", Timeout: 600 * time.Millisecond}}
	root := writeRoot(t, cfg)
	unready := filepath.Join(root, "perm", unreadyFile)
	if prev != "" {
		os.MkdirAll(filepath.Dir(unready), 0o755)
		if err := os.WriteFile(unready, []byte(prev+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	pets := fifoWatchdog(t, root)
	return runHostInit(t, root, "quiet"), pets, unready
}

func readUnready(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// Below the limit a failed critical service stops the petting (the
// watchdog resets the board: a fresh start clears transient faults), and
// this boot is counted as one more that did not reach ready.
func TestBootLoopBelowLimitStopsPetting(t *testing.T) {
	h, pets, unready := bootWithUnready(t, "2", "crash")
	h.wait(t, "init: NOT READY: critical service core failed")
	h.wait(t, "init: watchdog: not petting: ")
	before := pets.settled(t, "no pet at the watchdog's start")
	time.Sleep(4 * 200 * time.Millisecond)
	if n := pets.count() - before; n != 0 {
		t.Errorf("%d pets after a critical service failed, 2 boots into a loop", n)
	}
	if got := readUnready(t, unready); got != "3" {
		t.Errorf("unready count %q, want 3", got)
	}
	if lineIndex(h.lines(), "init: watchdog: BOOT LOOP") >= 0 {
		t.Error("BOOT LOOP below the limit")
	}
}

// From the limit on, a failed critical service before ready does not
// stop the petting: the gate stays up (failed closed) for diagnosis, and
// says so once.
func TestBootLoopKeepsTheGateUp(t *testing.T) {
	h, pets, unready := bootWithUnready(t, "3", "crash")
	h.wait(t, "init: /perm: the 3 boots before this one did not reach ready")
	h.wait(t, "init: NOT READY: critical service core failed")
	h.wait(t, "init: watchdog: BOOT LOOP: the 3 boots before this one did not reach ready; ")
	before := pets.settled(t, "no pet at the watchdog's start")
	time.Sleep(4 * 200 * time.Millisecond)
	if n := pets.count() - before; n < 2 {
		t.Errorf("%d pets in four intervals after the failure in a boot loop; want petting to go on", n)
	}
	if lineIndex(h.lines(), "init: watchdog: not petting") >= 0 {
		t.Error("the watchdog stopped petting in a boot loop")
	}
	if n := strings.Count(strings.Join(h.lines(), "\n"), "BOOT LOOP"); n != 1 {
		t.Errorf("BOOT LOOP said %d times, want once", n)
	}
	if got := readUnready(t, unready); got != "4" {
		t.Errorf("unready count %q, want 4", got)
	}
}

// A boot that reaches ready ends the loop: the count goes back to 0.
func TestBootLoopEndsAtReady(t *testing.T) {
	h, _, unready := bootWithUnready(t, "5", "steady")
	h.wait(t, "init: ready (")
	deadline := time.Now().Add(waitTimeout)
	for readUnready(t, unready) != "0" {
		if time.Now().After(deadline) {
			t.Fatalf("unready count %q after ready, want 0", readUnready(t, unready))
		}
		time.Sleep(20 * time.Millisecond)
	}
	// A damaged count is started over, not trusted.
	h2, _, unready2 := bootWithUnready(t, "lots", "steady")
	h2.wait(t, "init: /perm: ")
	h2.wait(t, "init: ready (")
	if lineIndex(h2.lines(), "init: /perm: "+unready2+": not a count") < 0 {
		t.Errorf("a damaged count was not reported: %q", h2.lines())
	}
}

// A boot that follows a good one (count 0, or no file yet: a first boot)
// and reaches ready leaves the count at 0 too: the next boot must not
// take it for one that did not reach ready (it did, every other boot
// said "the 1 boots before this one did not reach ready", and two failing
// boots after a good one were counted as three).
func TestBootLoopGoodBootLeavesZero(t *testing.T) {
	for _, prev := range []string{"", "0"} {
		h, _, unready := bootWithUnready(t, prev, "steady")
		h.wait(t, "init: ready (")
		deadline := time.Now().Add(waitTimeout)
		for got := readUnready(t, unready); got != "0"; got = readUnready(t, unready) {
			if time.Now().After(deadline) {
				t.Fatalf("count %q before the boot: %q after it reached ready, want 0", prev, got)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if lineIndex(h.lines(), "init: /perm: the ") >= 0 {
			t.Errorf("count %q: a good boot reported unready boots before it", prev)
		}
	}
}
