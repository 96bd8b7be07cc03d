package main

import (
	"os"
	"time"
)

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
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	var f *os.File
	var err error
	if in.pid1 {
		f, timeout, err = openWatchdog(path, timeout)
	} else {
		f, err = os.OpenFile(path, os.O_WRONLY, 0)
	}
	if f == nil {
		in.log.Printf("WATCHDOG NOT ARMED: %v", err)
		return
	}
	if err != nil {
		in.log.Printf("%v (petting anyway)", err)
	}
	in.wd = newWatchdog(in.log, f, cfg.Device, timeout, bootLoopGuard(in.log, in.unready, in.isReady, in.sup.criticalHealthy))
	in.wd.run()
	in.log.Printf("watchdog: %s armed, timeout %s, petting every %s while critical services are healthy", cfg.Device, short(timeout), in.wd.interval.Round(time.Millisecond))
}
