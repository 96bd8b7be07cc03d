package image

import (
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
func bootConfig(b *board.Board, modules []string, rows []ServiceRow, debug, test bool) *bootcfg.Config {
	c := &bootcfg.Config{
		Hostname:      hostname,
		Board:         b.Name,
		Arch:          b.Arch,
		KernelRelease: b.Kernel.Release,
		Modules:       modules,
		Console:       b.Console,
		Watchdog: bootcfg.Watchdog{
			Device: b.Watchdog.Device, Timeout: b.Watchdog.Timeout, Hardware: b.Watchdog.Hardware,
		},
		Perm:      bootcfg.Perm{Device: b.Perm.Device, FSType: b.Perm.FSType},
		TPM:       b.TPM.Device,
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
		c.Services = append(c.Services, r.Service)
	}
	return c
}
