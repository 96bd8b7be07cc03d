package main

import (
	"os"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Shutdown actions.
type action int

const (
	powerOff action = iota
	reboot
)

func (a action) String() string {
	if a == reboot {
		return "reboot"
	}
	return "power off"
}

// Signals to PID 1 follow busybox init, which the "poweroff" and "reboot"
// commands of busybox (and most embedded Linux tooling) send:
//
//	SIGUSR2  power off
//	SIGTERM  reboot
//	SIGINT   reboot (ctrl-alt-del, with the kernel's C-A-D handling off)
//
// The ACPI power button (QEMU system_powerdown) powers off.
var shutdownSignals = map[os.Signal]action{
	syscall.SIGUSR2: powerOff,
	syscall.SIGTERM: reboot,
	syscall.SIGINT:  reboot,
}

// straySignals are the signals the Go runtime ends the process on when
// the program has not asked for them: SIGHUP exits, SIGQUIT dumps the
// goroutines and exits, SIGABRT, SIGSYS, SIGILL, SIGTRAP and SIGSTKFLT
// crash, and so do SIGSEGV, SIGBUS and SIGFPE sent by kill(2). The
// kernel drops a signal PID 1 has no handler for, but the Go runtime
// installs one for each of these: a stray `kill -HUP 1` would end PID 1
// and panic the kernel. Init takes them and logs them. (A real fault is
// not a signal from kill and still crashes as it should.)
var straySignals = []os.Signal{syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGILL, syscall.SIGTRAP, syscall.SIGABRT,
	syscall.SIGBUS, syscall.SIGFPE, syscall.SIGSEGV, syscall.SIGSTKFLT, syscall.SIGSYS}

// shutdownRequests turns the signals above into actions on ch and makes
// every other signal that would end init harmless. main calls it first
// thing: until then a SIGTERM would end the process.
func shutdownRequests(log *logger, ch chan<- action) {
	// Logging SIGPIPE could raise another (console gone): ignore it.
	signal.Ignore(syscall.SIGPIPE)
	sig := make(chan os.Signal, 16)
	list := append([]os.Signal(nil), straySignals...)
	for s := range shutdownSignals {
		list = append(list, s)
	}
	signal.Notify(sig, list...)
	go func() {
		for s := range sig {
			a, ok := shutdownSignals[s]
			if !ok {
				guard(log, "stray signal", func() { log.Printf("signal %v ignored", s) })
				continue
			}
			select {
			case ch <- a:
			default:
			}
		}
	}()
}

// shutdownBudget is how long a clean shutdown may take before the
// watchdog is left to reset the board: every service its stop grace and
// the wait after SIGKILL (they stop one after the other), the debug
// shell's stop, and a margin for the orphans, sync and unmount.
func (in *initProc) shutdownBudget() time.Duration {
	grace := defaultStopGrace
	n := 0
	if in.sup != nil {
		grace, n = in.sup.grace, len(in.sup.order)
	}
	return time.Duration(n)*(grace+killWait) + killWait + 30*time.Second
}

// shutdown stops everything and powers off or reboots. As PID 1 it never
// returns; otherwise (a development host) it returns after the services
// have stopped.
func (in *initProc) shutdown(a action) {
	log := in.log
	log.Printf("shutting down (%s)", a)
	if in.wd != nil {
		in.wd.shuttingDown(in.shutdownBudget())
	}
	if in.shell != nil {
		guard(log, "stop debug shell", in.shell.stop)
	}
	if in.sup != nil {
		guard(log, "stop services", in.sup.stopAll)
	}
	if in.pid1 {
		// Whatever is left (orphans): TERM, a moment, KILL.
		unix.Kill(-1, unix.SIGTERM)
		time.Sleep(200 * time.Millisecond)
		unix.Kill(-1, unix.SIGKILL)
	}
	unix.Sync()
	if in.pid1 {
		if err := unix.Unmount(in.path("/perm"), 0); err != nil {
			log.Printf("unmount /perm: %v (remounting read-only)", err)
			unix.Mount("", in.path("/perm"), "", unix.MS_REMOUNT|unix.MS_RDONLY, "")
		}
		unix.Sync()
	}
	// Disarm last, once the data is on disk: a sync or unmount that hangs
	// before this still ends in a watchdog reset, not a board stuck for
	// good with its watchdog off.
	if in.wd != nil {
		guard(log, "watchdog close", func() {
			if err := in.wd.close(); err != nil {
				log.Printf("watchdog: close: %v", err)
			} else {
				log.Printf("watchdog: disarmed (magic close)")
			}
		})
	}
	cmd := unix.LINUX_REBOOT_CMD_POWER_OFF
	if a == reboot {
		log.Printf("rebooting")
		cmd = unix.LINUX_REBOOT_CMD_RESTART
	} else {
		log.Printf("powering off")
	}
	if !in.pid1 {
		log.Printf("not PID 1: exiting instead")
		return
	}
	if err := unix.Reboot(cmd); err != nil {
		log.Printf("reboot(%s): %v", a, err)
	}
	select {} // never exit as PID 1
}
