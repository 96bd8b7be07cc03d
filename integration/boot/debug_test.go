package boot

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/otgate/otgate/image"
	"github.com/otgate/otgate/integration/internal/gatetest"
	"github.com/otgate/otgate/qemu"
)

// The debug image (make image BOARD=qemu-x86_64 DEBUG=1) gives the serial
// console u-root's shell and core commands: a command typed on the
// console runs on the gate, beside the services, and the gate still
// comes up and powers off cleanly.
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

	// The console echoes what is typed; only the shell's answer holds the
	// sum, and the release is the gate's kernel's (uname, a core command).
	ctx := gatetest.Context(t, 3*time.Minute)
	answer := regexp.MustCompile(`otgate-debug-42 (\S+)`)
	for {
		if _, err := fmt.Fprintf(typing, "echo otgate-debug-$((6*7)) $(uname -r)\n"); err != nil {
			t.Fatalf("typing on the console: %v", err)
		}
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		line, err := vm.WaitFor(wctx, answer)
		cancel()
		if err == nil {
			if release := answer.FindStringSubmatch(line)[1]; release != b.Kernel.Release {
				t.Fatalf("the shell runs on kernel %q, the board's is %q: %q", release, b.Kernel.Release, line)
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
