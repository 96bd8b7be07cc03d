package main

import (
	"os"
	"testing"
	"time"
)

// The shutdown budget saturates instead of wrapping: with a stop grace
// of 2^62 ns (bootcfg refuses it at load; a supervisor built another way
// must still not wrap) three services' graces summed to a negative
// budget, so the watchdog took the shutdown as overrun at once and
// stopped petting in the middle of a clean power-off. Here the budget is
// the largest duration and the watchdog (a pipe) is petted on through
// the shutdown.
func TestShutdownBudgetSaturates(t *testing.T) {
	in := &initProc{sup: &supervisor{grace: 1 << 62, order: make([]*service, 3)}}
	if b := in.shutdownBudget(); b != maxDuration {
		t.Fatalf("shutdown budget %s (%d), want saturated at %s", b, int64(b), maxDuration)
	}
	// The ordinary sum is untouched: 3 services, 5 s grace.
	in.sup.grace = 5 * time.Second
	if b, want := in.shutdownBudget(), 3*(5*time.Second+killWait)+killWait+30*time.Second; b != want {
		t.Fatalf("shutdown budget %s, want %s", b, want)
	}
	in.sup.grace = 1 << 62

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
	wd.shuttingDown(in.shutdownBudget())
	before := pets.settled(t, "no pet as the shutdown began")
	time.Sleep(4 * wd.interval)
	if i := lineIndex(log.Lines(), "init: watchdog: shutdown still not done"); i >= 0 {
		t.Fatalf("shutdown taken as overrun: %s", log.Lines()[i])
	}
	if n := pets.count() - before; n < 2 {
		t.Fatalf("%d pets in four intervals of the shutdown, want the petting to go on", n)
	}
}

func TestDurationArithmeticSaturates(t *testing.T) {
	for _, tc := range []struct {
		got, want time.Duration
	}{
		{addDur(time.Second, 2*time.Second), 3 * time.Second},
		{addDur(maxDuration, 1), maxDuration},
		{addDur(maxDuration-1, 1), maxDuration},
		{addDur(1<<62, 1<<62), maxDuration},
		{mulDur(3, time.Second), 3 * time.Second},
		{mulDur(0, maxDuration), 0},
		{mulDur(3, 1<<62), maxDuration},
		{mulDur(2, maxDuration/2), maxDuration - 1},
		{mulDur(2, maxDuration/2+1), maxDuration},
	} {
		if tc.got != tc.want {
			t.Errorf("got %d, want %d", tc.got, tc.want)
		}
	}
}
