// Package initstatus is the protocol of init's status socket
// (bootcfg.StatusSocket): one CBOR request per connection, one CBOR
// response. It holds the message types, a Client used by `otgate status`
// and tests, and the table both print.
package initstatus

import (
	"errors"
	"time"

	"github.com/fxamacker/cbor/v2"
)

// Operations a Request may name.
const (
	OpStatus = "status"
	OpLog    = "log"
)

// Service states.
const (
	StateWaiting   = "waiting"   // waiting for its dependencies
	StateStarting  = "starting"  // started, not ready yet
	StateReady     = "ready"     // reported ready (or started/done)
	StateUnhealthy = "unhealthy" // ready once, then reported HEALTHY=0
	StateBackoff   = "backoff"   // exited, waiting to be restarted
	StateFailed    = "failed"    // crash loop or dependency failed: not restarted
	StateStopped   = "stopped"   // stopped at shutdown
	StateDone      = "done"      // one-shot task that exited 0
)

// ErrRemote is wrapped by errors the server reports in Response.Error.
var ErrRemote = errors.New("init status")

// Request is what a client sends.
type Request struct {
	Op string `cbor:"op" json:"op"`
}

// Response is what init answers; exactly one of Status, Log or Error is set.
type Response struct {
	Error  string   `cbor:"error,omitempty" json:"error,omitempty"`
	Status *Status  `cbor:"status,omitempty" json:"status,omitempty"`
	Log    []string `cbor:"log,omitempty" json:"log,omitempty"`
}

// Status is a snapshot of init.
type Status struct {
	Hostname string `cbor:"hostname" json:"hostname"`
	Board    string `cbor:"board" json:"board"`
	ImageID  string `cbor:"image_id" json:"image_id"`
	// BootTime is when init started (wall clock); Uptime is the time
	// since the kernel booted (init's start outside PID 1).
	BootTime time.Time     `cbor:"boot_time" json:"boot_time"`
	Uptime   time.Duration `cbor:"uptime" json:"uptime"`
	// Ready is true once every critical service has been ready.
	Ready bool `cbor:"ready" json:"ready"`
	// ConfigError is set when the boot config was unusable: init then runs
	// no services and never reports ready.
	ConfigError string `cbor:"config_error,omitempty" json:"config_error,omitempty"`
	// FirewallError is set when the baseline ruleset could not be
	// installed: init then runs no services (fail closed).
	FirewallError string `cbor:"firewall_error,omitempty" json:"firewall_error,omitempty"`
	// Measurement is the hex digest init extended into the boot
	// measurement PCR, empty when the boot was not measured.
	Measurement string `cbor:"measurement,omitempty" json:"measurement,omitempty"`
	// InitRSS is init's resident memory in bytes (VmRSS).
	InitRSS  uint64    `cbor:"init_rss" json:"init_rss"`
	Perm     Perm      `cbor:"perm" json:"perm"`
	Watchdog Watchdog  `cbor:"watchdog" json:"watchdog"`
	Services []Service `cbor:"services" json:"services"`
}

// Perm describes the persistent file system.
type Perm struct {
	Device string `cbor:"device" json:"device"` // empty when /perm is a tmpfs
	FSType string `cbor:"fs" json:"fs"`         // "ext4" or "tmpfs"
	Boots  uint64 `cbor:"boots" json:"boots"`
	// Size is the file system's size in bytes (ext4 only).
	Size int64 `cbor:"size,omitempty" json:"size,omitempty"`
	// Grown says what this boot grew: the partition to the disk's end
	// and the file system to the partition (init/permgrow.go).
	Grown string `cbor:"grown,omitempty" json:"grown,omitempty"`
	// Warning is set when /perm is not persistent.
	Warning string `cbor:"warning,omitempty" json:"warning,omitempty"`
	// PreviousRun says how the run before this boot ended: "clean
	// shutdown", "NO CLEAN SHUTDOWN (...)" (a power cut, a reset or a
	// crash) or "none (first boot on this disk)"; empty on a tmpfs.
	PreviousRun string `cbor:"previous_run,omitempty" json:"previous_run,omitempty"`
}

// Watchdog describes the hardware watchdog.
type Watchdog struct {
	Device  string        `cbor:"device" json:"device"` // empty: no watchdog
	Timeout time.Duration `cbor:"timeout" json:"timeout"`
	// Petting is true while init pets the device.
	Petting bool      `cbor:"petting" json:"petting"`
	LastPet time.Time `cbor:"last_pet" json:"last_pet"`
	// Note explains why petting stopped, if it did.
	Note string `cbor:"note,omitempty" json:"note,omitempty"`
}

// Service is one supervised service.
type Service struct {
	Name     string `cbor:"name" json:"name"`
	Critical bool   `cbor:"critical" json:"critical"`
	State    string `cbor:"state" json:"state"`
	PID      int    `cbor:"pid" json:"pid"`
	Restarts int    `cbor:"restarts" json:"restarts"`
	// LastExit is "status N" or "signal NAME", empty before the first exit.
	LastExit string `cbor:"last_exit,omitempty" json:"last_exit,omitempty"`
	// Since is when the service entered State.
	Since time.Time `cbor:"since" json:"since"`
	// Reason says why the service is unhealthy or failed.
	Reason string `cbor:"reason,omitempty" json:"reason,omitempty"`
}

var encMode = func() cbor.EncMode {
	opts := cbor.CoreDetEncOptions()
	opts.Time = cbor.TimeRFC3339Nano
	m, err := opts.EncMode()
	if err != nil {
		panic(err)
	}
	return m
}()

var decMode = func() cbor.DecMode {
	m, err := cbor.DecOptions{MaxArrayElements: 1 << 16}.DecMode()
	if err != nil {
		panic(err)
	}
	return m
}()

// EncMode is the deterministic encoding both sides use.
func EncMode() cbor.EncMode { return encMode }

// DecMode is the decoding both sides use.
func DecMode() cbor.DecMode { return decMode }
