package main

import (
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/otgate/otgate/internal/bootcfg"
)

// A clean shutdown keeps the watchdog petted while the services stop:
// here the critical service is stopped first (reverse start order) and a
// non-critical one then takes its whole grace period; a watchdog left
// unpetted that long (longer than its timeout) would reset the board in
// the middle of a power-off. The magic close still comes last.
func TestHostInitPetsWatchdogDuringShutdown(t *testing.T) {
	slow := svc("slow", bootcfg.ReadyNotify, "-mode=hang-on-term")
	core := svc("core", bootcfg.ReadyNotify, "-mode=steady")
	core.Critical = true
	core.DependsOn = []string{"slow"}
	grace := 2 * time.Second
	cfg := &bootcfg.Config{Services: []bootcfg.Service{slow, core}, StopGrace: grace,
		Watchdog: bootcfg.Watchdog{Device: "/dev/watchdog", Timeout: 600 * time.Millisecond}}
	root := writeRoot(t, cfg)
	pets := fifoWatchdog(t, root)

	h := runHostInit(t, root, "")
	h.wait(t, "init: ready (")
	pets.settled(t, "no pets while ready")
	h.cmd.Process.Signal(syscall.SIGUSR2)
	h.wait(t, "init: core stopped (")
	h.wait(t, "init: stopping slow")
	during := pets.settled(t, "no pets")
	h.wait(t, "init: slow stopped (")
	// The grace is more than three watchdog timeouts (ten intervals).
	if n := pets.count() - during; n < 3 {
		t.Fatalf("%d pets while slow was given its %s grace, want the petting to go on", n, grace)
	}
	<-h.done
	h.cmd.Wait()
	deadline := time.Now().Add(waitTimeout)
	for !pets.sawMagicClose() {
		if time.Now().After(deadline) {
			t.Fatalf("no magic close 'V' at the end of the shutdown")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A shutdown that overruns its budget has hung: the watchdog stops
// being petted, so it resets the board.
func TestWatchdogShutdownOverrunStopsPetting(t *testing.T) {
	rd, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	pets := newPetCounter(rd)
	log := newLogger(newTestWriter(t))
	unhealthy := func() (bool, string) { return false, "core stopped" }
	wd := newWatchdog(log, w, "pipe", 150*time.Millisecond, unhealthy)
	wd.run()
	defer wd.close()
	wd.shuttingDown(300 * time.Millisecond)
	before := pets.settled(t, "no pet as the shutdown began, though the services were unhealthy")
	time.Sleep(300 * time.Millisecond)
	waitLine(t, log, "init: watchdog: shutdown still not done after its time: not petting")
	after := pets.settled(t, "no pets")
	if after <= before {
		t.Errorf("no pets during the shutdown budget (%d before, %d after)", before, after)
	}
	time.Sleep(4 * wd.interval)
	if n := pets.count() - after; n != 0 {
		t.Fatalf("%d pets after the shutdown budget ran out", n)
	}
}
