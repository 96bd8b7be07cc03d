// Package bootcfg is the contract between the image builder and PID 1: the
// builder compiles a board definition and a service table into one CBOR file
// in the initramfs (/etc/otgate/boot.cbor); init reads it at boot and does
// what it says. Nothing else configures init.
package bootcfg

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/fxamacker/cbor/v2"
)

// Path is where the builder places the file and init reads it.
const Path = "/etc/otgate/boot.cbor"

// RunDir holds runtime sockets and the init log ring.
const RunDir = "/run/otgate"

// StatusSocket is init's status socket (CBOR request/response).
const StatusSocket = RunDir + "/init.sock"

// Sentinel errors of Validate.
var (
	ErrCycle        = errors.New("dependency cycle")
	ErrUnknownDep   = errors.New("unknown dependency")
	ErrDuplicate    = errors.New("duplicate service")
	ErrBadReadiness = errors.New("bad readiness signal")
)

// Config is everything init needs.
type Config struct {
	Hostname string `cbor:"1,keyasint"`
	Board    string `cbor:"2,keyasint"`
	Arch     string `cbor:"3,keyasint"`
	// KernelRelease names /lib/modules/<release>.
	KernelRelease string `cbor:"4,keyasint"`
	// Modules to load, in dependency order, as paths relative to
	// /lib/modules/<release>/ (the builder resolved the closure).
	Modules []string `cbor:"5,keyasint"`
	Console string   `cbor:"6,keyasint"`

	Watchdog Watchdog `cbor:"7,keyasint"`
	Perm     Perm     `cbor:"8,keyasint"`
	TPM      string   `cbor:"9,keyasint"` // TPM device path, e.g. /dev/tpmrm0
	// Uplink and Downlinks are interface names by role.
	Uplink    string   `cbor:"10,keyasint"`
	Downlinks []string `cbor:"11,keyasint"`

	Services  []Service `cbor:"12,keyasint"`
	CrashLoop CrashLoop `cbor:"13,keyasint"`
	// StopGrace is how long a service gets between SIGTERM and SIGKILL
	// (0: init's default), at most MaxStopGrace.
	StopGrace time.Duration `cbor:"14,keyasint"`

	// Debug images carry a shell and core commands for the serial console.
	Debug bool `cbor:"15,keyasint"`
	// TestHooks enables test-only kernel command-line hooks
	// (otgate.test.*). Never set in release images.
	TestHooks bool `cbor:"16,keyasint"`
	// ImageID is the sha256 of the image inputs, for status and logs.
	ImageID string `cbor:"17,keyasint"`
	// TPMPCRs are the board's PCRs (SHA-256 bank) the identity's data key
	// is sealed to, besides the boot measurement PCR (board.TPM.PCRs).
	TPMPCRs []int `cbor:"18,keyasint,omitempty"`
	// ModuleDeps[i] are the indexes in Modules (each below i) of the
	// modules to load before Modules[i]: its modules.dep dependencies and
	// soft pre-dependencies. Modules with none between them may load at
	// the same time. Empty: one at a time, in order.
	ModuleDeps [][]int `cbor:"19,keyasint,omitempty"`
}

// Watchdog is the device init pets.
type Watchdog struct {
	Device string `cbor:"1,keyasint"` // empty: no watchdog
	// Timeout is the watchdog timeout (0: init's default, 30 s), from
	// MinWatchdogTimeout to MaxWatchdogTimeout. The kernel counts whole
	// seconds: init programs the device with the timeout rounded up to
	// a second and reports (log, status) the timeout the device took.
	Timeout  time.Duration `cbor:"2,keyasint"`
	Hardware bool          `cbor:"3,keyasint"`
}

// Perm is the persistent disk.
type Perm struct {
	Device string `cbor:"1,keyasint"` // "/dev/vda" or "PARTLABEL=otgate-perm"
	FSType string `cbor:"2,keyasint"`
}

// CrashLoop: Restarts restarts within Window marks a service failed, and
// so do more than Restarts starts in a row that end before the service is
// ready. Restarts is 1 to MaxCrashLoopRestarts and Window
// MinCrashLoopWindow to MaxCrashLoopWindow; both zero (CrashLoop{}) turns
// the detection off on purpose: a crashing service is restarted for ever,
// with back-off. One set without the other is refused.
type CrashLoop struct {
	Restarts int           `cbor:"1,keyasint"`
	Window   time.Duration `cbor:"2,keyasint"`
}

// Readiness kinds.
const (
	// ReadyNotify: the service writes "READY=1\n" to the file descriptor
	// named by $OTGATE_NOTIFY_FD (see package ready).
	ReadyNotify = "notify"
	// ReadyStarted: ready as soon as the process has started.
	ReadyStarted = "started"
	// ReadyExit: a one-shot task; ready when it exits 0.
	ReadyExit = "exit"
)

// Bounds of the durations init adds up. Init sums them (a shutdown's
// budget is every service's stop grace; a critical service's wait for
// its dependencies is bounded by the readiness timeouts of its chain of
// dependencies): a value beyond these is a damaged or mistyped config,
// and an unbounded one could overflow those sums.
const (
	MaxStopGrace    = 10 * time.Minute
	MaxReadyTimeout = time.Hour
)

// Bounds of the watchdog timeout. Below the minimum init could not pet
// in time (it pets every third of the timeout); a timeout beyond the
// maximum lets a hung gate run on for longer than any board needs, and
// is a mistyped value. (The kernel's API counts whole seconds: a timeout
// under a second is for tests with a pipe as the device; a real device
// gets one second.)
const (
	MinWatchdogTimeout = 100 * time.Millisecond
	MaxWatchdogTimeout = 10 * time.Minute
)

// Bounds of the crash-loop rule. A window shorter than the minimum (init
// waits at least 250 ms before a restart) can never hold the restarts it
// counts, and a limit beyond the maximum is never reached: either turns
// the detection off without saying so.
const (
	MinCrashLoopWindow   = time.Second
	MaxCrashLoopWindow   = 24 * time.Hour
	MaxCrashLoopRestarts = 100
)

// noID is (uid_t)-1: no id. setresuid and setresgid take it as "leave
// unchanged" (root, for a service of init) and setuid refuses it, so a
// service given it would either keep root or never start.
const noID = 1<<32 - 1

// ExitNoRestart is the exit status with which a service tells init "I
// failed and a restart will not help": init marks it failed at once (no
// back-off, no crash loop) and never starts the services that depend on
// it. The identity trust gate uses it in quarantine.
const ExitNoRestart = 100

// Service is one row of the service table.
type Service struct {
	Name      string   `cbor:"1,keyasint"`
	Binary    string   `cbor:"2,keyasint"` // absolute path in the image
	Args      []string `cbor:"3,keyasint"`
	Env       []string `cbor:"4,keyasint"`
	DependsOn []string `cbor:"5,keyasint"`
	// Critical services gate "init: ready" and the watchdog.
	Critical  bool   `cbor:"6,keyasint"`
	Readiness string `cbor:"7,keyasint"`
	// Timeout is the readiness timeout (0: init's default), at most
	// MaxReadyTimeout.
	Timeout time.Duration `cbor:"8,keyasint"`
	// UID/GID to run as; 0 is root.
	UID uint32 `cbor:"9,keyasint"`
	GID uint32 `cbor:"10,keyasint"`
	// Capabilities are raised as ambient capabilities for a service that
	// runs as a non-root UID (names from KnownCapabilities, e.g.
	// "CAP_NET_RAW"); empty: none.
	Capabilities []string `cbor:"11,keyasint,omitempty"`
	// Nice is the scheduling priority the service starts with (-20 to
	// 19, 0 the default), like systemd's Nice=: the services on the path
	// to "ready" and the data plane get ahead of housekeeping ones when
	// the CPUs are busy (a boot is). Every thread the service makes
	// inherits it.
	Nice int `cbor:"12,keyasint,omitempty"`
	// SkipIfExists names an absolute path: when it exists as the service
	// is about to start, a one-shot (ReadyExit) service is done without
	// running, like systemd's ConditionPathExists=!path (a first-boot
	// step on every later boot).
	SkipIfExists string `cbor:"13,keyasint,omitempty"`
	// OwnedDirs are absolute paths of directories the service owns, like
	// systemd's StateDirectory= and RuntimeDirectory=: before each start
	// init creates a missing one (mode 0700) and makes it, and the
	// entries directly in it, belong to UID:GID with the directory at
	// mode 0700. Something other than a directory there (a planted
	// symlink) is a start error naming it.
	OwnedDirs []string `cbor:"14,keyasint,omitempty"`
	// GroupReadDirs are absolute paths of directories whose regular files
	// the service's group may read but not change: before each start init
	// makes each one root:GID, mode 2750 (set-group-ID, so files created
	// in it later get the group too), and its regular files root:GID,
	// mode 0640. GID must not be 0.
	GroupReadDirs []string `cbor:"15,keyasint,omitempty"`
}

var encMode = func() cbor.EncMode {
	m, err := cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		panic(err)
	}
	return m
}()

// Marshal encodes c deterministically.
func Marshal(c *Config) ([]byte, error) { return encMode.Marshal(c) }

// Unmarshal decodes and validates.
func Unmarshal(b []byte) (*Config, error) {
	var c Config
	dm, _ := cbor.DecOptions{ExtraReturnErrors: cbor.ExtraDecErrorUnknownField}.DecMode()
	if err := dm.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("bootcfg: decode: %w", err)
	}
	if err := c.Validate(nil); err != nil {
		return nil, err
	}
	return &c, nil
}

// Load reads and validates path.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("bootcfg: %w", err)
	}
	c, err := Unmarshal(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Validate checks the service table: unique names, known dependencies, no
// cycles, known readiness kinds, numbers within their bounds (durations,
// the watchdog timeout, the crash-loop rule, user and group ids), and
// (when exists is not nil) that every binary exists.
func (c *Config) Validate(exists func(path string) bool) error {
	if c.StopGrace < 0 || c.StopGrace > MaxStopGrace {
		return fmt.Errorf("stop grace %s is outside 0 to %s (0: init's default)", c.StopGrace, MaxStopGrace)
	}
	if t := c.Watchdog.Timeout; t != 0 && (t < MinWatchdogTimeout || t > MaxWatchdogTimeout) {
		return fmt.Errorf("watchdog timeout %s is outside %s to %s (0: init's default)", t, MinWatchdogTimeout, MaxWatchdogTimeout)
	}
	if err := c.CrashLoop.validate(); err != nil {
		return err
	}
	if len(c.ModuleDeps) != 0 && len(c.ModuleDeps) != len(c.Modules) {
		return fmt.Errorf("module dependencies: %d lists for %d modules", len(c.ModuleDeps), len(c.Modules))
	}
	for i, deps := range c.ModuleDeps {
		for _, d := range deps {
			if d < 0 || d >= i {
				return fmt.Errorf("module %s: dependency index %d is not an earlier module (0-%d)", c.Modules[i], d, i-1)
			}
		}
	}
	seen := map[int]bool{}
	for _, p := range c.TPMPCRs {
		if p < 0 || p > 23 || seen[p] {
			return fmt.Errorf("TPM PCRs %v: PCR %d is out of range 0-23 or listed twice", c.TPMPCRs, p)
		}
		seen[p] = true
	}
	byName := map[string]*Service{}
	for i := range c.Services {
		s := &c.Services[i]
		if s.Name == "" {
			return fmt.Errorf("service table row %d: empty name", i+1)
		}
		if _, dup := byName[s.Name]; dup {
			return fmt.Errorf("service %q: %w", s.Name, ErrDuplicate)
		}
		byName[s.Name] = s
		switch s.Readiness {
		case ReadyNotify, ReadyStarted, ReadyExit:
		default:
			return fmt.Errorf("service %q: %w %q (want %s, %s or %s)", s.Name, ErrBadReadiness, s.Readiness, ReadyNotify, ReadyStarted, ReadyExit)
		}
		if s.Timeout < 0 || s.Timeout > MaxReadyTimeout {
			return fmt.Errorf("service %q: readiness timeout %s is outside 0 to %s (0: init's default)", s.Name, s.Timeout, MaxReadyTimeout)
		}
		if err := checkCapabilities(s); err != nil {
			return err
		}
		if s.UID == noID || s.GID == noID {
			return fmt.Errorf("service %q: uid %d, gid %d: %d is (uid_t)-1, not an id; want 0 to %d", s.Name, s.UID, s.GID, uint32(noID), uint32(noID-1))
		}
		if s.Nice < -20 || s.Nice > 19 {
			return fmt.Errorf("service %q: nice %d is outside -20..19", s.Name, s.Nice)
		}
		if s.SkipIfExists != "" && (s.Readiness != ReadyExit || !strings.HasPrefix(s.SkipIfExists, "/")) {
			return fmt.Errorf("service %q: skip-if-exists %q: only a one-shot (%s) service may be skipped, and the path must be absolute", s.Name, s.SkipIfExists, ReadyExit)
		}
		if err := checkDirs(s); err != nil {
			return err
		}
		if exists != nil && !exists(s.Binary) {
			return fmt.Errorf("service %q: unknown binary %q: not in the image", s.Name, s.Binary)
		}
	}
	for _, s := range c.Services {
		for _, d := range s.DependsOn {
			if _, ok := byName[d]; !ok {
				var known []string
				for n := range byName {
					known = append(known, n)
				}
				sort.Strings(known)
				return fmt.Errorf("service %q depends on %q: %w (known: %s)", s.Name, d, ErrUnknownDep, strings.Join(known, ", "))
			}
		}
	}
	_, err := c.StartOrder()
	return err
}

// validate checks the crash-loop rule: off (both zero) or both within
// their bounds.
func (l CrashLoop) validate() error {
	if l.Restarts == 0 && l.Window == 0 {
		return nil
	}
	if l.Restarts < 1 || l.Restarts > MaxCrashLoopRestarts {
		return fmt.Errorf("crash loop restarts %d is outside 1 to %d (with crash loop window %s; both 0: no crash-loop detection)", l.Restarts, MaxCrashLoopRestarts, l.Window)
	}
	if l.Window < MinCrashLoopWindow || l.Window > MaxCrashLoopWindow {
		return fmt.Errorf("crash loop window %s is outside %s to %s (with crash loop restarts %d; both 0: no crash-loop detection)", l.Window, MinCrashLoopWindow, MaxCrashLoopWindow, l.Restarts)
	}
	return nil
}

// StartOrder returns service names in dependency order (dependencies first,
// table order among equals). A cycle is an error naming it.
func (c *Config) StartOrder() ([]string, error) {
	deps := map[string][]string{}
	for _, s := range c.Services {
		deps[s.Name] = s.DependsOn
	}
	const (
		white = iota
		grey
		black
	)
	color := map[string]int{}
	var order []string
	var stack []string
	var visit func(n string) error
	visit = func(n string) error {
		switch color[n] {
		case grey:
			i := 0
			for stack[i] != n {
				i++
			}
			return fmt.Errorf("%w: %s -> %s", ErrCycle, strings.Join(stack[i:], " -> "), n)
		case black:
			return nil
		}
		color[n] = grey
		stack = append(stack, n)
		for _, d := range deps[n] {
			if err := visit(d); err != nil {
				return err
			}
		}
		stack = stack[:len(stack)-1]
		color[n] = black
		order = append(order, n)
		return nil
	}
	for _, s := range c.Services {
		if err := visit(s.Name); err != nil {
			return nil, err
		}
	}
	return order, nil
}
