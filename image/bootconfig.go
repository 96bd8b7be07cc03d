package image

import (
	"strconv"
	"strings"
	"time"

	"github.com/otgate/otgate/board"
	"github.com/otgate/otgate/internal/bootcfg"
)

// Boot policy every image carries.
const (
	hostname          = "otgate"
	crashLoopRestarts = 5
	crashLoopWindow   = 30 * time.Second
	stopGrace         = 5 * time.Second
)

// bootConfig compiles the board and the service table into init's
// configuration. ImageID is left empty; the caller fills it in.
func bootConfig(b *board.Board, modules []string, moduleDeps [][]int, rows []ServiceRow, debug, test bool) *bootcfg.Config {
	c := &bootcfg.Config{
		Hostname:      hostname,
		Board:         b.Name,
		Arch:          b.Arch,
		KernelRelease: b.Kernel.Release,
		Modules:       modules,
		ModuleDeps:    moduleDeps,
		Console:       b.Console,
		Watchdog: bootcfg.Watchdog{
			Device: b.Watchdog.Device, Timeout: b.Watchdog.Timeout, Hardware: b.Watchdog.Hardware,
		},
		Perm:      bootcfg.Perm{Device: b.Perm.Device, FSType: b.Perm.FSType},
		TPM:       b.TPM.Device,
		TPMPCRs:   append([]int(nil), b.TPM.PCRs...),
		Uplink:    b.Interface(board.Uplink),
		CrashLoop: bootcfg.CrashLoop{Restarts: crashLoopRestarts, Window: crashLoopWindow},
		StopGrace: stopGrace,
		Debug:     debug,
		TestHooks: test,
	}
	for _, n := range b.NICs {
		if n.Role == board.Downlink {
			c.Downlinks = append(c.Downlinks, n.Name)
		}
	}
	for _, r := range rows {
		c.Services = append(c.Services, withBoardArgs(b, r.Service))
	}
	return c
}

// identityService is the identity row's name (services.go).
const identityService = "identity"

// withBoardArgs returns s with the arguments that depend on the board: the
// identity service seals its data key to the board's PCRs (-pcrs), and on
// a board without a TPM (TPM.None) runs in dev mode (-dev: a software key,
// every certificate and audit record marked), which it refuses to do
// unless told. The row's own Args are never modified (the table is shared
// by all boards). A board that sets TPM.None beside a TPM device fails
// board.Validate (register and Lookup), so -dev never meets -pcrs.
func withBoardArgs(b *board.Board, s bootcfg.Service) bootcfg.Service {
	if s.Name != identityService || (len(b.TPM.PCRs) == 0 && !b.TPM.None) {
		return s
	}
	args := append([]string(nil), s.Args...)
	if b.TPM.None {
		args = append(args, "-dev")
	}
	if len(b.TPM.PCRs) > 0 {
		pcrs := make([]string, len(b.TPM.PCRs))
		for i, p := range b.TPM.PCRs {
			pcrs[i] = strconv.Itoa(p)
		}
		args = append(args, "-pcrs", strings.Join(pcrs, ","))
	}
	s.Args = args
	return s
}
