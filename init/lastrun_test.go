package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/otgate/otgate/internal/bootcfg"
)

// The record of the last run across a sequence of boots: a first boot, a
// clean shutdown, two runs cut short, a clean one again; then a damaged
// counter and a damaged record, each reported and neither hiding the
// run's own record.
func TestLastRunAcrossBoots(t *testing.T) {
	perm := t.TempDir()
	at := time.Date(2026, 11, 24, 6, 0, 0, 0, time.UTC)
	check := func(boot uint64) lastRun {
		t.Helper()
		l, err := checkLastRun(perm, boot, at.Add(time.Duration(boot)*time.Hour))
		if err != nil {
			t.Fatalf("boot %d: %v", boot, err)
		}
		b, err := os.ReadFile(filepath.Join(perm, lastRunFile))
		if want := "running: boot " + strconv.FormatUint(boot, 10) + " started "; err != nil || !strings.HasPrefix(string(b), want) {
			t.Fatalf("boot %d: record %q, %v; want it to start %q", boot, b, err, want)
		}
		return l
	}
	clean := func(boot uint64) {
		t.Helper()
		if err := markCleanShutdown(perm, boot, at.Add(time.Duration(boot)*time.Hour+time.Minute)); err != nil {
			t.Fatal(err)
		}
	}

	if l := check(1); l.Clean || l.Unclean || l.describe() != "none (first boot on this disk)" {
		t.Fatalf("first boot: %+v %q", l, l.describe())
	}
	clean(1)
	if l := check(2); !l.Clean || l.Unclean || l.describe() != "clean shutdown (boot 1 ended 2026-11-24T07:01:00Z)" {
		t.Fatalf("after a clean shutdown: %+v %q", l, l.describe())
	}
	// Boot 2 is cut short, and boot 3 too.
	if l := check(3); !l.Unclean || l.Count != 1 ||
		l.describe() != "NO CLEAN SHUTDOWN (boot 2 started 2026-11-24T08:00:00Z; power cut, reset or crash); unclean ends on this disk: 1" {
		t.Fatalf("after a power cut: %+v %q", l, l.describe())
	}
	if l := check(4); !l.Unclean || l.Count != 2 || l.Record != "boot 3 started 2026-11-24T09:00:00Z" {
		t.Fatalf("after a second power cut: %+v", l)
	} else if l.WatchdogReset = true; l.describe() != "RESET BY THE WATCHDOG (boot 3 started 2026-11-24T09:00:00Z; it was no longer petted); unclean ends on this disk: 2" {
		t.Fatalf("after a watchdog reset: %q", l.describe())
	}
	clean(4)
	if l := check(5); !l.Clean || l.Count != 2 || l.describe() != "clean shutdown (boot 4 ended 2026-11-24T10:01:00Z); unclean ends on this disk before: 2" {
		t.Fatalf("clean again: %+v %q", l, l.describe())
	}

	// A counter that is not a number: the unclean end is reported, the
	// counter left as it is (not reset to 1), and this run recorded.
	counter := filepath.Join(perm, uncleanFile)
	if err := os.WriteFile(counter, []byte("many\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := checkLastRun(perm, 6, at)
	if err == nil || !strings.Contains(err.Error(), counter+": not a count") || !l.Unclean {
		t.Fatalf("damaged counter: %+v, %v", l, err)
	}
	if b, _ := os.ReadFile(counter); string(b) != "many\n" {
		t.Fatalf("damaged counter rewritten: %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(perm, lastRunFile)); !strings.HasPrefix(string(b), "running: boot 6 ") {
		t.Fatalf("record after a damaged counter: %q", b)
	}

	// A record that is neither: reported, nothing concluded, replaced.
	os.Remove(counter)
	if err := os.WriteFile(filepath.Join(perm, lastRunFile), []byte("\x00\x01garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err = checkLastRun(perm, 7, at)
	if err == nil || !strings.Contains(err.Error(), "not a record of a run") || l.Clean || l.Unclean || l.describe() != "not recorded" {
		t.Fatalf("damaged record: %+v %q, %v", l, l.describe(), err)
	}
	if b, _ := os.ReadFile(filepath.Join(perm, lastRunFile)); !strings.HasPrefix(string(b), "running: boot 7 ") {
		t.Fatalf("record after a damaged one: %q", b)
	}
}

// Init itself, on this host: a run that shuts down (SIGUSR2) is reported
// clean by the next one; a run killed (as a power cut would end it) is
// reported on the console and in the status, and counted.
func TestHostInitReportsHowThePreviousRunEnded(t *testing.T) {
	core := svc("core", bootcfg.ReadyNotify, "-mode=steady")
	core.Critical = true
	root := t.TempDir()
	writeBootConfig(t, root, &bootcfg.Config{Hostname: "gate-test", Board: "host", ImageID: "0123456789abcdef0123", Services: []bootcfg.Service{core}})
	previous := func(h *hostInit) string {
		t.Helper()
		c := h.dial(t)
		st, err := c.Status()
		if err != nil {
			t.Fatal(err)
		}
		return st.Perm.PreviousRun
	}

	h := runHostInit(t, root, "")
	h.wait(t, "init: ready (1 services, ")
	if got := previous(h); got != "none (first boot on this disk)" {
		t.Fatalf("first run: previous run %q", got)
	}
	h.cmd.Process.Signal(syscall.SIGUSR2)
	<-h.done

	h = runHostInit(t, root, "")
	h.wait(t, "init: ready (1 services, ")
	if got := previous(h); !strings.HasPrefix(got, "clean shutdown (boot 1 ended ") {
		t.Fatalf("after a clean shutdown: previous run %q", got)
	}
	if lineIndex(h.lines(), "init: PREVIOUS RUN") >= 0 {
		t.Fatal("a clean shutdown reported as unclean on the console")
	}
	h.cmd.Process.Kill()
	<-h.done

	h = runHostInit(t, root, "")
	h.wait(t, "init: PREVIOUS RUN DID NOT SHUT DOWN CLEANLY (boot 2 started ")
	h.wait(t, "init: ready (1 services, ")
	if got := previous(h); !strings.HasPrefix(got, "NO CLEAN SHUTDOWN (boot 2 started ") || !strings.HasSuffix(got, "; unclean ends on this disk: 1") {
		t.Fatalf("after a kill: previous run %q", got)
	}
}
