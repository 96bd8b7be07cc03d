package main

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// debugShellBinary is u-root's shell in debug images (make image DEBUG=1,
// image.DebugCommands). Production images carry no shell, and init starts
// none.
const debugShellBinary = "/bin/gosh"

// Back-off between shells: a shell that exits (the technician typed exit,
// or it cannot run) is started again after shellDelayMin, doubling up to
// shellDelayMax while it keeps exiting within shellSteady.
const (
	shellDelayMin = time.Second
	shellDelayMax = time.Minute
	shellSteady   = 10 * time.Second
)

// consoleShell keeps a shell on the serial console of a debug image, for
// field diagnostics: the shell's session has the console as its
// controlling terminal, and a new shell starts whenever the last one
// exits, until stop.
type consoleShell struct {
	log    *logger
	reaper *reaper
	shell  string // absolute path of the shell binary
	tty    string // the console's device, e.g. /dev/ttyS0
	// delayMin is the first back-off (shellDelayMin; tests shorten it).
	delayMin time.Duration

	stopCh chan struct{}
	done   chan struct{}
}

// consoleDevice is the device of the serial console: the board's console
// from the boot config, or else the kernel command line's last console=
// (options after a comma dropped), or "" when neither names one.
func consoleDevice(cfgConsole string, cmdline map[string]string) string {
	name := cfgConsole
	if name == "" {
		name = cmdline["console"]
	}
	name, _, _ = strings.Cut(name, ",")
	if name == "" {
		return ""
	}
	if strings.HasPrefix(name, "/") {
		return name
	}
	return "/dev/" + name
}

func newConsoleShell(log *logger, r *reaper, shell, tty string) *consoleShell {
	return &consoleShell{log: log, reaper: r, shell: shell, tty: tty, delayMin: shellDelayMin,
		stopCh: make(chan struct{}), done: make(chan struct{})}
}

// run starts the loop.
func (c *consoleShell) run() {
	c.log.Printf("DEBUG IMAGE: shell %s on %s (press Enter for a prompt); production images have none", c.shell, c.tty)
	go func() {
		defer close(c.done)
		guard(c.log, "debug shell", c.loop)
	}()
}

func (c *consoleShell) loop() {
	delay := c.delayMin
	for {
		start := time.Now()
		pid, exit, err := c.start()
		if err != nil {
			c.log.Printf("debug shell: %v; trying again in %s", err, short(delay))
		} else {
			select {
			case ws := <-exit:
				if time.Since(start) >= shellSteady {
					delay = c.delayMin
				}
				c.log.Printf("debug shell exited (%s); a new one in %s", exitString(ws), short(delay))
			case <-c.stopCh:
				signalGroup(pid, unix.SIGKILL)
				select {
				case <-exit:
				case <-time.After(5 * time.Second):
					c.log.Printf("debug shell: pid %d did not die after SIGKILL, giving up on it", pid)
				}
				return
			}
		}
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-c.stopCh:
			t.Stop()
			return
		}
		delay = min(delay*2, shellDelayMax)
	}
}

// start runs one shell in its own session with the console as its
// controlling terminal and standard input, output and error.
func (c *consoleShell) start() (int, <-chan unix.WaitStatus, error) {
	f, err := os.OpenFile(c.tty, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return 0, nil, fmt.Errorf("console: %w", err)
	}
	defer f.Close()
	fd := f.Fd()
	attr := &syscall.ProcAttr{
		Dir:   "/",
		Env:   []string{"PATH=/bin:/sbin:/usr/bin:/usr/sbin", "HOME=/", "TERM=vt100"},
		Files: []uintptr{fd, fd, fd},
		// Ctty is the child's descriptor: its standard input.
		Sys: &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0},
	}
	pid, exit, err := c.reaper.start(c.shell, []string{c.shell}, attr)
	if err != nil {
		return 0, nil, fmt.Errorf("start %s on %s: %w", c.shell, c.tty, err)
	}
	return pid, exit, nil
}

// stop ends the loop and the running shell, and waits for both.
func (c *consoleShell) stop() {
	select {
	case <-c.stopCh:
	default:
		close(c.stopCh)
	}
	<-c.done
}

// isExecutable says whether path is a regular file with an execute bit.
func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}
