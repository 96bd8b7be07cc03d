package main

import (
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
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

// consoleFlush is how long a shutdown waits for the console to take
// the last lines.
const consoleFlush = 2 * time.Second

// shutdownBudget is how long a clean shutdown may take before the
// watchdog is left to reset the board: every service its stop grace and
// the wait after SIGKILL (they stop one after the other), the debug
// shell's stop, and a margin for the orphans, sync and unmount. The sum
// saturates: bootcfg bounds StopGrace (MaxStopGrace), but a sum that
// wrapped would put the deadline in the past and have the watchdog reset
// the board in the middle of a clean shutdown.
func (in *initProc) shutdownBudget() time.Duration {
	grace := defaultStopGrace
	n := 0
	if in.sup != nil {
		grace, n = in.sup.grace, len(in.sup.order)
	}
	return addDur(addDur(mulDur(n, addDur(grace, killWait)), killWait), 30*time.Second)
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
		// A killed process holds its files until it has exited and been
		// reaped (the reaper runs beside this): wait for that, up to
		// killWait, so that /perm is not busy for the unmount.
		deadline := time.Now().Add(killWait)
		for {
			left := liveUserProcesses(in.path("/proc"))
			if len(left) == 0 {
				break
			}
			if time.Now().After(deadline) {
				log.Printf("processes %v still there %s after SIGKILL; unmounting anyway", left, killWait)
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// Every service has stopped: this run ends cleanly from here on.
	in.noteCleanShutdown()
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
		log.flush(consoleFlush)
		return
	}
	// The console writes from its own goroutine: let it show the last
	// lines first (a stopped console does not hold the power-off up).
	log.flush(consoleFlush)
	if err := unix.Reboot(cmd); err != nil {
		log.Printf("reboot(%s): %v", a, err)
	}
	select {} // never exit as PID 1
}

// liveUserProcesses lists the processes under proc, other than PID 1,
// that are neither kernel threads nor zombies (a zombie has closed its
// files): what can still hold /perm busy. kill(-1, 0) cannot tell: it
// counts kernel threads.
func liveUserProcesses(proc string) []int {
	ents, err := os.ReadDir(proc)
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 1 {
			continue
		}
		b, err := os.ReadFile(filepath.Join(proc, e.Name(), "stat"))
		if err != nil {
			continue // gone meanwhile
		}
		if liveUserStat(string(b)) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// liveUserStat reads a /proc/PID/stat line: state (field 3) not a zombie
// or dead, and flags (field 9) without PF_KTHREAD.
func liveUserStat(stat string) bool {
	i := strings.LastIndexByte(stat, ')') // the command may hold spaces and parentheses
	if i < 0 {
		return false
	}
	f := strings.Fields(stat[i+1:]) // f[0] is field 3 (state), f[6] field 9 (flags)
	if len(f) < 7 {
		return false
	}
	if f[0] == "Z" || f[0] == "X" || f[0] == "x" {
		return false
	}
	flags, err := strconv.ParseUint(f[6], 10, 64)
	if err != nil {
		return false
	}
	const pfKthread = 0x00200000
	return flags&pfKthread == 0
}
