package qemu

import (
	"fmt"
	"io"
	"time"

	"github.com/otgate/otgate/qemu/lab"
)

// Option configures a VM started by Start or StartT.
type Option func(*config) error

// WatchdogAction is what QEMU does when the emulated watchdog fires.
type WatchdogAction string

const (
	WatchdogReset    WatchdogAction = "reset"    // with -no-reboot QEMU exits, SHUTDOWN reason "guest-reset"
	WatchdogPoweroff WatchdogAction = "poweroff" // QEMU exits 0, indistinguishable from a clean shutdown without events
	WatchdogDebug    WatchdogAction = "debug"    // QEMU prints "watchdog: timer fired" and keeps running
)

// HostForward forwards a TCP port on the host's loopback to the guest's
// uplink (user networking). HostPort 0 picks a free port; VM.HostPort tells
// which.
type HostForward struct {
	HostPort  int
	GuestPort int
}

type config struct {
	tpmState       string
	diskPath       string
	diskSize       int64
	disk           bool
	watchdog       WatchdogAction
	lab            *lab.Lab
	userNet        bool
	forwards       []HostForward
	cmdline        []string
	serialLog      string
	serialLogLimit int64
	console        io.Writer
	consoleIn      io.Reader
	memory         string
	timeout        time.Duration
	reboot         bool
	extraArgs      []string
	kernel         string
	initramfs      string
	smp            int
}

// WithTPM attaches a software TPM 2.0 (swtpm) whose state lives in stateDir
// (created if missing, kept afterwards: a second boot with the same
// directory sees the same TPM). The front end is the board's TPM.QEMUDevice.
func WithTPM(stateDir string) Option {
	return func(c *config) error {
		if stateDir == "" {
			return fmt.Errorf("qemu: WithTPM: empty state directory")
		}
		c.tpmState = stateDir
		return nil
	}
}

// WithDisk attaches the persistent disk (the board's QEMU.DiskModel). For
// DirectKernel boards path is a raw file, created sparse with size bytes
// if missing. For UEFIDisk boards the disk is the boot disk: path is
// created as a copy of <imageDir>/disk.img if missing (size is ignored), so
// successive boots with the same path share /perm. Without WithDisk a
// UEFIDisk board boots from a fresh per-VM copy.
func WithDisk(path string, size int64) Option {
	return func(c *config) error {
		if path == "" {
			return fmt.Errorf("qemu: WithDisk: empty path")
		}
		if size < 0 {
			return fmt.Errorf("qemu: WithDisk %s: negative size %d", path, size)
		}
		c.disk, c.diskPath, c.diskSize = true, path, size
		return nil
	}
}

// WithWatchdog adds the board's emulated watchdog device with the given
// action when it fires.
func WithWatchdog(action WatchdogAction) Option {
	return func(c *config) error {
		switch action {
		case WatchdogReset, WatchdogPoweroff, WatchdogDebug:
		default:
			return fmt.Errorf("qemu: WithWatchdog: unknown action %q (want reset, poweroff or debug)", action)
		}
		c.watchdog = action
		return nil
	}
}

// WithLab connects the gate's NICs to the lab network: the uplink NIC to the
// lab's uplink tap (unless WithUserNet takes the uplink) and the OT
// downlink NIC to the lab's OT bridge.
func WithLab(l *lab.Lab) Option {
	return func(c *config) error {
		if l == nil {
			return fmt.Errorf("qemu: WithLab: nil lab")
		}
		c.lab = l
		return nil
	}
}

// WithUserNet connects the uplink NIC to QEMU user networking (slirp: DHCP
// gives the guest 10.0.2.15) with TCP forwards from 127.0.0.1 on the host.
// Slirp is restricted: the forwards are the only traffic it carries; the
// guest cannot connect to the host or anything beyond it (no DNS either).
func WithUserNet(forwards ...HostForward) Option {
	return func(c *config) error {
		for _, f := range forwards {
			if f.GuestPort <= 0 || f.GuestPort > 65535 || f.HostPort < 0 || f.HostPort > 65535 {
				return fmt.Errorf("qemu: WithUserNet: bad forward host %d -> guest %d", f.HostPort, f.GuestPort)
			}
		}
		c.userNet = true
		c.forwards = append(c.forwards, forwards...)
		return nil
	}
}

// WithCmdline appends kernel command-line arguments (DirectKernel boards).
func WithCmdline(args ...string) Option {
	return func(c *config) error {
		c.cmdline = append(c.cmdline, args...)
		return nil
	}
}

// WithSerialLog writes the serial console to path (kept after the VM ends).
// By default it goes to a file in the VM's temporary directory.
func WithSerialLog(path string) Option {
	return func(c *config) error {
		if path == "" {
			return fmt.Errorf("qemu: WithSerialLog: empty path")
		}
		c.serialLog = path
		return nil
	}
}

// WithSerialLogLimit bounds the serial log file: once it would pass bytes,
// it is renamed to <path>.1 (replacing the one before) and a new file
// started. The default is DefaultSerialLogLimit. The console lines kept
// in memory (Lines, WaitFor) are bounded too: the last 100000.
func WithSerialLogLimit(bytes int64) Option {
	return func(c *config) error {
		if bytes <= 0 {
			return fmt.Errorf("qemu: WithSerialLogLimit(%d): want a size over 0", bytes)
		}
		c.serialLogLimit = bytes
		return nil
	}
}

// WithConsoleTo also copies the serial console to w (make run: the terminal).
func WithConsoleTo(w io.Writer) Option {
	return func(c *config) error {
		c.console = w
		return nil
	}
}

// WithConsoleFrom feeds r to the serial console's input (make run: the
// terminal's standard input, for the debug image's shell).
func WithConsoleFrom(r io.Reader) Option {
	return func(c *config) error {
		c.consoleIn = r
		return nil
	}
}

// WithMemory sets the guest memory (QEMU -m syntax: "512M", "1G").
func WithMemory(size string) Option {
	return func(c *config) error {
		if size == "" {
			return fmt.Errorf("qemu: WithMemory: empty size")
		}
		c.memory = size
		return nil
	}
}

// WithTimeout kills the VM d after it started, whatever it is doing: a bound
// for tests that would otherwise hang. Exit.TimedOut tells it happened.
func WithTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("qemu: WithTimeout: non-positive duration %s", d)
		}
		c.timeout = d
		return nil
	}
}

// WithReboot lets a guest reset reboot the VM instead of ending QEMU
// (no -no-reboot).
func WithReboot() Option {
	return func(c *config) error {
		c.reboot = true
		return nil
	}
}

// WithKernel boots kernel and initramfs instead of <imageDir>/kernel and
// <imageDir>/initramfs (DirectKernel boards).
func WithKernel(kernel, initramfs string) Option {
	return func(c *config) error {
		if kernel == "" || initramfs == "" {
			return fmt.Errorf("qemu: WithKernel: kernel %q and initramfs %q must both be set", kernel, initramfs)
		}
		c.kernel, c.initramfs = kernel, initramfs
		return nil
	}
}

// WithSMP sets the number of virtual CPUs (default: the board's QEMU.CPUs).
func WithSMP(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return fmt.Errorf("qemu: WithSMP: %d CPUs", n)
		}
		c.smp = n
		return nil
	}
}

// WithQEMUArgs appends raw QEMU arguments (an escape hatch for experiments).
func WithQEMUArgs(args ...string) Option {
	return func(c *config) error {
		c.extraArgs = append(c.extraArgs, args...)
		return nil
	}
}
