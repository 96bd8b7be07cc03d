package boot

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/otgate/otgate/image"
	"github.com/otgate/otgate/integration/internal/gatetest"
	"github.com/otgate/otgate/qemu"
)

// The debug image (make image BOARD=qemu-x86_64 DEBUG=1) gives the serial
// console u-root's shell and core commands: a command typed on the
// console runs on the gate, beside the services, and the gate still
// comes up and powers off cleanly. The shell also shows what PID 1 set up
// that no service reports: the host name and the loopback.
func TestX86DebugShell(t *testing.T) {
	b, img := gatetest.Variant(t, "qemu-x86_64", "debug", image.WithDebug(true))
	state := t.TempDir()
	in, typing := io.Pipe()
	t.Cleanup(func() { typing.Close() })
	vm := qemu.StartT(t, b, img,
		qemu.WithDisk(filepath.Join(state, "perm.raw"), 256<<20),
		qemu.WithTPM(filepath.Join(state, "tpm")),
		qemu.WithConsoleFrom(in),
		qemu.WithTimeout(5*time.Minute),
	)
	gatetest.MustSee(t, vm, "init: DEBUG IMAGE: shell /bin/gosh on /dev/ttyS0")
	t.Logf("debug image: %s", gatetest.MustSee(t, vm, "init: ready ("))

	gatetest.MustSee(t, vm, "init: rng ready (waited ")

	// The console echoes what is typed; only the shell's answer holds the
	// sum. What it prints is the gate's own view, through the core
	// commands: the kernel release, the host name init set, and the
	// loopback's flags (init brought it up: IFF_UP, 0x1).
	ctx := gatetest.Context(t, 3*time.Minute)
	answer := regexp.MustCompile(`otgate-debug-42 (\S+) (\S+) (0x[0-9a-f]+)`)
	for {
		if _, err := fmt.Fprintf(typing, "echo otgate-debug-$((6*7)) $(uname -r) $(hostname) $(cat /sys/class/net/lo/flags)\n"); err != nil {
			t.Fatalf("typing on the console: %v", err)
		}
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		line, err := vm.WaitFor(wctx, answer)
		cancel()
		if err == nil {
			m := answer.FindStringSubmatch(line)
			flags, _ := strconv.ParseUint(m[3], 0, 32)
			if m[1] != b.Kernel.Release || m[2] != "otgate" || flags&0x1 == 0 {
				t.Fatalf("the gate says kernel %s, host name %s, lo flags %s; want %s, otgate, up: %q",
					m[1], m[2], m[3], b.Kernel.Release, line)
			}
			t.Logf("console shell answered: %q", line)
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("no answer from the console shell: %v\n%s", err, vm.Tail(40))
		}
	}
	gatetest.PowerOff(t, vm)
}
