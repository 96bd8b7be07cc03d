// Command init is the otgate appliance's PID 1. It mounts the file
// systems, loads the board's kernel modules, installs the baseline deny
// ruleset before any interface (loopback included) is up and fails closed
// without it (no service starts), prepares /perm (formatting it on first
// boot, growing its partition and file system to fill a bigger disk:
// permgrow.go), extends the boot
// measurement into TPM PCR 15 (measure.go), then supervises the services
// of the boot config
// (bootcfg.Path): dependency order (before every start and restart),
// readiness, restart with back-off, crash loops and services that never
// get ready, a watchdog petted only while the critical services are
// healthy, a status socket, and a clean power-off or reboot. It never
// exits as PID 1.
//
// Signals to PID 1 follow busybox init: SIGUSR2 powers off, SIGTERM
// reboots, SIGINT (ctrl-alt-del) reboots; the ACPI power button (QEMU
// system_powerdown) powers off.
//
// On a development host (not PID 1) it skips everything that changes the
// machine (mounts, modules, host name, reboot) and takes its paths below
// -root, so the supervisor and the status socket can be run and tested
// with real child processes:
//
//	go run ./init -root /tmp/x -config /tmp/x/boot.cbor
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sync"
	"syscall"
	"time"

	"github.com/otgate/otgate/internal/bootcfg"
	"github.com/otgate/otgate/services/identity/bootmeasure"
	"golang.org/x/sys/unix"
)

// initProc is the state of one init run.
type initProc struct {
	prehashed *bootmeasure.Prehashed // the boot measurement's binaries, hashed ahead

	pid1    bool
	root    string // "/" as PID 1
	cfg     *bootcfg.Config
	log     *logger
	reaper  *reaper
	sup     *supervisor
	wd      *watchdog
	perm    permState
	unready uint64 // boots in a row before this one that did not reach ready (bootloop.go)
	// lastRun is how the run before this one ended, and whether this
	// one is recorded (lastrun.go).
	lastRun lastRun
	started time.Time
	// startCPU is /proc/stat when init started (zero: unknown), for the
	// ready line's CPU load.
	startCPU cpuTimes
	cmdline  map[string]string

	readyMu sync.Mutex
	ready   bool

	shutdownCh chan action
	configErr  string
	// firewallErr is set when the baseline ruleset could not be
	// installed: init then runs no services (fail closed).
	firewallErr string
	// measurement is the hex digest extended into the boot PCR, or "".
	measurement string
	// shell is the debug image's console shell, or nil.
	shell *consoleShell
}

// firewall is the -firewall flag (always on as PID 1).
var firewall = new(bool)

// path maps an absolute path of the appliance to the root directory.
func (in *initProc) path(p string) string { return filepath.Join(in.root, p) }

func main() {
	// Keep PID 1 small: collect early, and return memory to the kernel.
	debug.SetGCPercent(50)
	debug.SetMemoryLimit(12 << 20)

	pid1 := os.Getpid() == 1
	root := flag.String("root", "/", "directory the appliance's paths are relative to (development hosts)")
	config := flag.String("config", "", "boot config (default <root>"+bootcfg.Path+")")
	cmdline := flag.String("cmdline", "", "kernel command line to use instead of /proc/cmdline (development hosts)")
	firewall = flag.Bool("firewall", false, "install the baseline ruleset when not PID 1 (only inside a private network namespace)")
	if !pid1 {
		flag.Parse()
	}
	in := &initProc{pid1: pid1, root: *root, started: time.Now(), log: newLogger(newConsoleWriter(os.Stderr))}
	if *config == "" {
		*config = in.path(bootcfg.Path)
	}
	in.shutdownCh = make(chan action, 1)
	shutdownRequests(in.log, in.shutdownCh)
	guard(in.log, "boot (continuing with what is up)", func() { in.boot(*config, *cmdline) })
	a := <-in.shutdownCh
	in.shutdown(a)
	if pid1 {
		select {}
	}
}

// boot brings the system up; shutdown requests arrive on in.shutdownCh.
func (in *initProc) boot(configPath, cmdline string) {
	log := in.log
	if in.pid1 {
		mountEarly(log)
		openConsole(log)
		// ctrl-alt-del sends SIGINT to init instead of rebooting at once.
		if err := unix.Reboot(unix.LINUX_REBOOT_CMD_CAD_OFF); err != nil {
			log.Printf("ctrl-alt-del to SIGINT: %v", err)
		}
	} else {
		log.Printf("not PID 1: development mode below %s (no mounts, modules, host name or reboot)", in.root)
		unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
	}
	in.startCPU = readCPUTimes(in.root)
	in.reaper = newReaper(log, true)
	in.reaper.run()

	shutdownCh := in.shutdownCh

	runDir := in.path(bootcfg.RunDir)
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		log.Printf("mkdir %s: %v", runDir, err)
	}
	if err := log.mirror(filepath.Join(runDir, "init.log")); err != nil {
		log.Printf("%v", err)
	}
	if cmdline != "" || !in.pid1 {
		in.cmdline = parseCmdline(cmdline)
	} else {
		in.cmdline = readCmdline("/proc/cmdline")
	}

	cfg, err := bootcfg.Load(configPath)
	if err == nil {
		// Every binary must be in the image.
		err = cfg.Validate(func(p string) bool {
			fi, err := os.Stat(p)
			return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
		})
		if err != nil {
			err = fmt.Errorf("%s: %w", configPath, err)
		}
	}
	// A debug image keeps a shell on the console; one whose boot config
	// is unusable too (it carries the shell, production images do not):
	// that is when field diagnostics are needed most.
	debugImage := err == nil && cfg.Debug
	if err != nil {
		log.Printf("CONFIG ERROR: %v", err)
		log.Printf("CONFIG ERROR: running no services; the gate is NOT operational and will not report ready")
		cfg = &bootcfg.Config{}
		in.configErr = err.Error()
		debugImage = in.pid1 && isExecutable(debugShellBinary)
	}
	in.cfg = cfg
	console := consoleDevice(cfg.Console, in.cmdline)
	log.Printf("otgate init: board %s, image %s, %d services (started %s after boot)", cfg.Board, cfg.ImageID, len(cfg.Services), secs(in.uptime()))

	if in.pid1 {
		if err := setHostname(cfg.Hostname); err != nil {
			log.Printf("%v", err)
		}
		// With one CPU the hashing would only compete with the module
		// loads (and hold up each one's return for a scheduler slice).
		if cfg.TPM != "" && runtime.NumCPU() > 1 {
			in.prehashed = prehash("/proc/self/exe", cfg)
		}
		loadModules(log, filepath.Join("/lib/modules", cfg.KernelRelease), cfg.Modules, cfg.ModuleDeps)
		orderNICs(log, "/sys/class/net")
	}
	// The baseline goes in right after the modules, before any interface
	// (loopback included) is up. Without it init fails closed.
	if in.pid1 || *firewall {
		if in.firewallErr = in.setupFirewall(); in.firewallErr != "" {
			cfg = &bootcfg.Config{Board: cfg.Board, ImageID: cfg.ImageID, Hostname: cfg.Hostname,
				Watchdog: cfg.Watchdog, Perm: cfg.Perm, TPM: cfg.TPM, TestHooks: cfg.TestHooks}
			in.cfg = cfg
		}
	} else {
		log.Printf("firewall: not PID 1: baseline not installed (-firewall installs it, only inside a private network namespace)")
	}
	if in.pid1 {
		if err := loopbackUp(); err != nil {
			log.Printf("%v", err)
		}
	}
	if d, err := waitRNG(); err != nil {
		log.Printf("rng: %v", err)
	} else {
		log.Printf("rng ready (waited %s)", secs(d))
	}

	if in.pid1 {
		wait, err := permWait(in.cmdline)
		if err != nil {
			log.Printf("/perm: %v", err)
		} else if wait != defaultPermWait {
			log.Printf("/perm: %s: waiting up to %s for the disk", permWaitParam, short(wait))
		}
		in.perm = setupPerm(log, cfg.Perm.Device, "/sys", "/dev", "/perm", wait)
	} else {
		in.perm = hostPerm(log, in.path("/perm"))
	}
	if in.perm.FSType != "tmpfs" {
		n, err := countUnready(filepath.Join(in.path("/perm"), unreadyFile))
		if err != nil {
			log.Printf("/perm: %v", err)
		}
		in.unready = n
		if n > 0 {
			log.Printf("/perm: the %d boots before this one did not reach ready", n)
		}
		in.noteLastRun()
	}

	// Measure what this boot runs before any service starts.
	in.measurement = in.measure(configPath)
	// Building the ruleset and hashing the binaries were one-off
	// allocations: give their pages back before the long steady state.
	debug.FreeOSMemory()

	var spawnOpts spawnOptions
	if !in.pid1 {
		spawnOpts.deathSignal = syscall.SIGKILL
	}
	sup, err := newSupervisor(cfg, log, in.reaper, spawnOpts)
	if err != nil { // Load validated it already; keep going with nothing
		log.Printf("service table: %v", err)
		sup, _ = newSupervisor(&bootcfg.Config{}, log, in.reaper, spawnOpts)
	}
	in.sup = sup

	in.startWatchdog()

	if _, err := in.serveStatus(in.path(bootcfg.StatusSocket)); err != nil {
		log.Printf("%v", err)
	}
	if in.pid1 {
		watchPowerButton(log, "/dev/input", func() {
			log.Printf("power button pressed")
			select {
			case shutdownCh <- powerOff:
			default:
			}
		})
	}

	sup.start()
	// Only as PID 1: on a development host the console is the terminal
	// init was started from.
	if debugImage && in.pid1 {
		if console == "" {
			log.Printf("DEBUG IMAGE: no console device named (board or console=): no shell")
		} else {
			in.shell = newConsoleShell(log, in.reaper, debugShellBinary, console)
			in.shell.run()
		}
	}
	if in.configErr == "" && in.firewallErr == "" {
		go guard(log, "ready watcher", in.watchReady)
	}
}

// openConsole makes /dev/console init's stdin, stdout and stderr (the
// kernel could not open it before devtmpfs was mounted); the logger's
// console writer writes to stderr, the console from then on.
func openConsole(log *logger) {
	f, err := os.OpenFile("/dev/console", os.O_RDWR, 0)
	if err != nil {
		log.Printf("open /dev/console: %v", err)
		return
	}
	for fd := 0; fd <= 2; fd++ {
		unix.Dup3(int(f.Fd()), fd, 0)
	}
	f.Close()
}

// hostPerm is /perm on a development host: a plain directory below root.
func hostPerm(log *logger, dir string) permState {
	st := permState{Device: dir, FSType: "host-dir"}
	n, err := countBoot(filepath.Join(dir, "init", "boots"))
	if err != nil {
		log.Printf("/perm: boot counter: %v", err)
	}
	st.Boots = n
	log.Printf("/perm is %s (development host, boot %d)", dir, n)
	return st
}

// uptime is the time since the kernel booted (since init started when
// not PID 1).
func (in *initProc) uptime() time.Duration {
	if in.pid1 {
		var ts unix.Timespec
		if unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts) == nil {
			return time.Duration(ts.Nano())
		}
	}
	return time.Since(in.started)
}

func (in *initProc) isReady() bool {
	in.readyMu.Lock()
	defer in.readyMu.Unlock()
	return in.ready
}

// watchReady logs "init: ready (...)" once every critical service has been
// ready, then applies the watchdog test hook.
func (in *initProc) watchReady() {
	for _, s := range in.sup.critical() {
		select {
		case <-s.readyCh:
		case <-s.failedCh:
			in.log.Printf("NOT READY: critical service %s failed", s.cfg.Name)
			return
		}
	}
	in.readyMu.Lock()
	in.ready = true
	in.readyMu.Unlock()
	load := busySince(in.startCPU, readCPUTimes(in.root))
	in.log.Printf("ready (%d services, %s after boot%s)", len(in.cfg.Services), secs(in.uptime()), load)
	if in.perm.FSType != "tmpfs" {
		if err := clearUnready(filepath.Join(in.path("/perm"), unreadyFile)); err != nil {
			in.log.Printf("/perm: %v", err)
		}
	}
	if in.cfg.TestHooks && in.cmdline[hookStopWatchdog] == "1" {
		if in.wd != nil {
			in.wd.halt("test hook " + hookStopWatchdog)
		}
		in.log.Printf("test hook: watchdog petting stopped")
	}
}
