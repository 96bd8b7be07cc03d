package main

import (
	"fmt"
	"os"
	"time"

	"github.com/otgate/otgate/internal/bootcfg"
)

// defaultWatchdogTimeout is the watchdog timeout of a boot config that
// names none.
const defaultWatchdogTimeout = 30 * time.Second

// watchdogTimeout is the boot config's watchdog timeout to use (zero: the
// default). bootcfg refuses a value outside its bounds at load; one that
// got here all the same (a config not loaded by bootcfg.Load) is refused
// too, and the default used: a petting interval of 0 made the petting
// loop panic and end PID 1.
func watchdogTimeout(d time.Duration) (time.Duration, error) {
	if d == 0 {
		return defaultWatchdogTimeout, nil
	}
	if d < bootcfg.MinWatchdogTimeout || d > bootcfg.MaxWatchdogTimeout {
		return defaultWatchdogTimeout, fmt.Errorf("watchdog timeout %s is outside %s to %s; using %s",
			d, short(bootcfg.MinWatchdogTimeout), bootcfg.MaxWatchdogTimeout, short(defaultWatchdogTimeout))
	}
	return d, nil
}

// startWatchdog opens the board's watchdog and starts petting it. Outside
// PID 1 the device path is taken below root and must not be a character
// device: tests use a FIFO or a file, never a real watchdog.
func (in *initProc) startWatchdog() {
	cfg := in.cfg.Watchdog
	if cfg.Device == "" {
		return
	}
	path := in.path(cfg.Device)
	if !in.pid1 {
		if fi, err := os.Stat(path); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			in.log.Printf("watchdog: %s is a character device; refusing to open it outside PID 1", path)
			return
		}
	}
	timeout, err := watchdogTimeout(cfg.Timeout)
	if err != nil {
		in.log.Printf("CONFIG ERROR: %v", err)
	}
	// The device takes whole seconds, and may clamp or refuse the
	// value: init pets by, and reports, the timeout the device took.
	var f *os.File
	took := timeout
	if in.pid1 {
		f, took, err = openWatchdog(path, timeout)
		if f != nil {
			in.noteWatchdogReset(f, cfg.Device)
		}
	} else {
		f, err = os.OpenFile(path, os.O_WRONLY, 0)
	}
	if f == nil {
		in.log.Printf("WATCHDOG NOT ARMED: %v", err)
		return
	}
	if err != nil {
		in.log.Printf("%v (petting anyway, by the device's timeout)", err)
	}
	in.wd = newWatchdog(in.log, f, cfg.Device, took, bootLoopGuard(in.log, in.unready, in.isReady, in.sup.criticalHealthy))
	in.wd.run()
	in.log.Printf("watchdog: %s armed, timeout %s, petting every %s while critical services are healthy", cfg.Device, timeoutText(took, timeout), in.wd.interval.Round(time.Millisecond))
}

// timeoutText names the timeout a watchdog device took, and the one the
// boot config asked for when the device took another.
func timeoutText(took, asked time.Duration) string {
	switch took {
	case 0:
		return "unknown (asked " + short(asked) + ")"
	case asked:
		return short(took)
	}
	return short(took) + " (asked " + short(asked) + ")"
}
