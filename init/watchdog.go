package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// watchdog pets a watchdog device every interval, but only while healthy()
// says every critical service is running and healthy. When petting stops
// the device resets the machine after its timeout: that is the point.
type watchdog struct {
	dev      io.WriteCloser
	path     string
	timeout  time.Duration
	interval time.Duration
	healthy  func() (bool, string)
	log      *logger

	mu      sync.Mutex
	petting bool
	lastPet time.Time
	note    string
	halted  bool // test hook or shutdown: never pet again
	quit    chan struct{}
	done    chan struct{}
	// stopBy: a clean shutdown is under way; pet whatever the services'
	// health until then (zero: not shutting down).
	stopBy time.Time
}

// openWatchdog opens a watchdog character device and programs its timeout
// (programWatchdog), returning the timeout the device took: 0 when it
// does not say. Opening arms it. (Never call this on a development host's
// /dev/watchdog.)
func openWatchdog(path string, timeout time.Duration) (*os.File, time.Duration, error) {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return nil, 0, fmt.Errorf("watchdog %s: %w", path, err)
	}
	took, err := programWatchdog(ioctlOn(f), timeout)
	if err != nil {
		err = fmt.Errorf("watchdog %s: %w", path, err)
	}
	return f, took, err
}

// ioctlOn issues watchdog ioctls on f.
func ioctlOn(f *os.File) wdIoctl {
	return func(req uint, arg *int32) error {
		// The watchdog ioctls take and return an int.
		if _, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), uintptr(req), uintptr(unsafe.Pointer(arg))); e != 0 {
			return e
		}
		return nil
	}
}

// wdIoctl issues one watchdog ioctl whose argument is an int (seconds,
// or flags) the kernel reads, writes back, or both.
type wdIoctl func(req uint, arg *int32) error

// programWatchdog sets a watchdog's timeout to want, rounded up to a
// whole second (the kernel counts seconds: a timeout under one second is
// one second, never left unset), and returns the timeout the device has
// now. That is what WDIOC_SETTIMEOUT hands back (a driver may clamp or
// round the value), or, when the device refuses the value (out of its
// range, or no settable timeout), the timeout it kept, read with
// WDIOC_GETTIMEOUT, and an error saying so; 0 and an error when the
// device tells neither. Init pets by the returned timeout and reports it:
// petting by the asked one would let the device reset a healthy board
// whose own timeout is shorter.
func programWatchdog(ioctl wdIoctl, want time.Duration) (time.Duration, error) {
	asked := int32(max(1, (want+time.Second-1)/time.Second)) // want is at most bootcfg.MaxWatchdogTimeout
	secs := asked
	serr := ioctl(unix.WDIOC_SETTIMEOUT, &secs)
	if serr == nil && secs > 0 {
		return time.Duration(secs) * time.Second, nil
	}
	why := fmt.Sprintf("set timeout %ds", asked)
	if serr != nil {
		why += ": " + serr.Error()
	} else {
		why += fmt.Sprintf(": the device answered %ds", secs)
	}
	secs = 0
	if gerr := ioctl(unix.WDIOC_GETTIMEOUT, &secs); gerr != nil || secs <= 0 {
		if gerr == nil {
			gerr = fmt.Errorf("answered %ds", secs)
		}
		return 0, fmt.Errorf("%s; its own timeout is unknown (get timeout: %v)", why, gerr)
	}
	return time.Duration(secs) * time.Second, fmt.Errorf("%s; the device keeps its timeout of %ds", why, secs)
}

// unknownTimeoutInterval is how often init pets a watchdog whose timeout
// it does not know: as for the shortest timeout the kernel can set.
const unknownTimeoutInterval = time.Second / 3

// newWatchdog pets dev every third of timeout (0: the device's timeout is
// unknown, every unknownTimeoutInterval).
func newWatchdog(log *logger, dev io.WriteCloser, path string, timeout time.Duration, healthy func() (bool, string)) *watchdog {
	interval := timeout / 3
	if timeout <= 0 {
		interval = unknownTimeoutInterval
	}
	return &watchdog{dev: dev, path: path, timeout: timeout, interval: interval, healthy: healthy, log: log,
		quit: make(chan struct{}), done: make(chan struct{})}
}

func (w *watchdog) run() {
	go func() {
		defer close(w.done)
		t := time.NewTicker(w.interval)
		defer t.Stop()
		for {
			guard(w.log, "watchdog", w.tick)
			select {
			case <-t.C:
			case <-w.quit:
				return
			}
		}
	}()
}

func (w *watchdog) tick() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.halted {
		return
	}
	if !w.stopBy.IsZero() {
		if time.Now().After(w.stopBy) {
			w.log.Printf("watchdog: shutdown still not done after its time: not petting, the watchdog will reset the board")
			w.halted, w.petting, w.note = true, false, "shutdown overran"
			return
		}
		if w.pet() {
			w.petting, w.note = true, "shutting down"
		}
		return
	}
	ok, why := w.healthy()
	if !ok {
		if w.petting || w.note == "" {
			w.log.Printf("watchdog: not petting: %s", why)
		}
		w.petting, w.note = false, why
		return
	}
	if !w.pet() {
		return
	}
	if !w.petting && w.note != "" {
		w.log.Printf("watchdog: petting again")
	}
	w.petting, w.note = true, ""
}

// pet writes to the device (w.mu held) and says whether that worked.
func (w *watchdog) pet() bool {
	if _, err := w.dev.Write([]byte{0}); err != nil {
		w.log.Printf("watchdog: pet %s: %v", w.path, err)
		w.petting, w.note = false, err.Error()
		return false
	}
	w.lastPet = time.Now()
	return true
}

// shuttingDown keeps the watchdog petted until close, whatever the
// services' health, for at most budget: stopping the services leaves the
// critical ones stopped (not healthy), and a watchdog that fired while
// the others are still being stopped would turn a clean power-off into a
// reset and cut the final sync and unmount. A shutdown that takes longer
// than budget has hung: petting stops and the watchdog resets the board.
func (w *watchdog) shuttingDown(budget time.Duration) {
	w.mu.Lock()
	if w.halted {
		w.mu.Unlock()
		return
	}
	w.stopBy = time.Now().Add(budget)
	w.mu.Unlock()
	guard(w.log, "watchdog", w.tick) // pet now: the last may be an interval ago
}

// halt stops petting for good (the test hook).
func (w *watchdog) halt(why string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.halted, w.petting, w.note = true, false, why
}

// close stops the loop and magic-closes the device ('V'), which disarms a
// watchdog that supports it, then closes it.
func (w *watchdog) close() error {
	close(w.quit)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	w.halted, w.petting, w.note = true, false, "closed"
	_, err := w.dev.Write([]byte("V"))
	if cerr := w.dev.Close(); err == nil {
		err = cerr
	}
	return err
}

func (w *watchdog) state() (petting bool, last time.Time, note string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.petting, w.lastPet, w.note
}
