// Package boot holds the QEMU integration tests of the appliance image
// itself: PID 1, the service supervisor, the watchdog, shutdown and the
// persistent disk, on every board.
package boot

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/otgate/otgate/integration/internal/gatetest"
	"github.com/otgate/otgate/qemu"
)

// The story of one gate on qemu-x86_64: first boot formats /perm and comes
// up; a flaky service is restarted with back-off; a crash-looping one is
// marked failed while the rest keep running; the status socket lists every
// service; an ACPI power-down stops services in reverse order and QEMU exits
// 0. The second boot finds the first boot's data on /perm and says the run
// before ended cleanly; when PID 1 stops petting (test hook) the hardware
// watchdog resets the VM, the harness tells that apart from a clean
// shutdown, and the third boot says the second did not shut down cleanly
// and that the watchdog reset the board.
func TestX86Lifecycle(t *testing.T) {
	b, img := gatetest.Image(t, "qemu-x86_64")
	state := t.TempDir()
	disk := filepath.Join(state, "perm.raw")
	tpm := filepath.Join(state, "tpm")

	// Boot 1.
	vm := qemu.StartT(t, b, img,
		qemu.WithDisk(disk, 256<<20),
		qemu.WithTPM(tpm),
		qemu.WithWatchdog(qemu.WatchdogReset),
		qemu.WithTimeout(5*time.Minute),
	)
	ctx := gatetest.Context(t, 4*time.Minute)
	gatetest.MustSee(t, vm, `init: /perm mounted (/dev/vda, ext4, boot 1)`)
	ready := gatetest.MustSee(t, vm, "init: ready (")
	t.Logf("boot 1: %s", ready)

	// Back-off: flaky crashes twice, each restart delay doubles, then it runs.
	gatetest.MustSee(t, vm, "init: flaky exited (status 1), restart 1 in 250ms")
	gatetest.MustSee(t, vm, "init: flaky exited (status 1), restart 2 in 500ms")
	gatetest.MustSee(t, vm, regexp.MustCompile(`^init: flaky ready \(`))
	// Crash loop: crashloop is given up on; steady keeps running.
	gatetest.MustSee(t, vm, regexp.MustCompile(`^init: crashloop: crash loop \(5 restarts in 30s\), marked failed$`))

	// The status socket, read on the device by the test service through
	// the same client `otgate status` uses.
	// statusdump prints it 20 s after start, once the crash loop is over.
	gatetest.MustSee(t, vm, "statusdump: testsvc: status")
	for _, row := range []string{`steady\*\s+ready`, `flaky\s+ready`, `crashloop\s+failed`, `identity\s+\S+`} {
		t.Logf("status row: %s", gatetest.MustSee(t, vm, regexp.MustCompile(`^statusdump: `+row+`\b`)))
	}

	// Nothing else died meanwhile.
	if line := find(vm, regexp.MustCompile(`^init: steady exited`)); line != "" {
		t.Errorf("steady exited while crashloop was failing: %q", line)
	}

	// ACPI power button: reverse order stop, clean power-off, QEMU exit 0.
	if err := vm.Powerdown(ctx); err != nil {
		t.Fatalf("powerdown: %v", err)
	}
	exit, err := vm.Wait(ctx)
	if err != nil {
		t.Fatalf("wait: %v", err)
	}
	if !exit.CleanPowerOff() {
		t.Fatalf("boot 1 did not power off cleanly: %s\n%s", exit, vm.Tail(40))
	}
	stops := stopOrder(vm)
	want := []string{"flaky", "steady"}
	if !sameOrder(stops, want) {
		t.Errorf("stop order %v, want %v (reverse of start order) as a subsequence", stops, want)
	}
	gatetest.MustSee(t, vm, "init: powering off")
	// The orphans killed at the end are gone before /perm is unmounted,
	// without waiting out the limit (kernel threads are not waited for).
	if line := find(vm, regexp.MustCompile(`still there .* after SIGKILL|unmount /perm`)); line != "" {
		t.Errorf("shutdown: %q", line)
	}

	// Boot 2: same disk, same TPM; the watchdog test hook stops petting.
	// The reset reboots the VM in place (as a board's does): boot 3 finds
	// boot 2's run unfinished, and the watchdog device says the reset was
	// its own. Then QEMU is ended (boot 3 would stop petting too).
	vm2 := qemu.StartT(t, b, img,
		qemu.WithDisk(disk, 256<<20),
		qemu.WithTPM(tpm),
		qemu.WithWatchdog(qemu.WatchdogReset),
		qemu.WithReboot(),
		qemu.WithCmdline("otgate.test.stop_watchdog=1"),
		qemu.WithTimeout(5*time.Minute),
	)
	gatetest.MustSee(t, vm2, `init: /perm mounted (/dev/vda, ext4, boot 2)`)
	gatetest.MustSee(t, vm2, regexp.MustCompile(`^init: previous run: clean shutdown \(boot 1 ended \S+\)$`))
	gatetest.MustSee(t, vm2, "init: ready (")
	gatetest.MustSee(t, vm2, "init: test hook: watchdog petting stopped")
	gatetest.MustSee(t, vm2, `init: /perm mounted (/dev/vda, ext4, boot 3)`)
	t.Logf("boot 3: %s", gatetest.MustSee(t, vm2, regexp.MustCompile(`^init: PREVIOUS RUN DID NOT SHUT DOWN CLEANLY \(boot 2 started \S+\): a power cut, a reset or a crash \(unclean ends on this disk: 1\)$`)))
	t.Logf("boot 3: %s", gatetest.MustSee(t, vm2, regexp.MustCompile(`^init: watchdog: /dev/watchdog reset the board: the previous run stopped petting it`)))
	if err := vm2.Quit(ctx); err != nil {
		t.Fatal(err)
	}
	exit2, err := vm2.Wait(ctx)
	if err != nil {
		t.Fatalf("wait for watchdog: %v", err)
	}
	action, fired := exit2.WatchdogFired()
	if !fired || action != "reset" {
		t.Fatalf("watchdog did not reset the VM: %s\n%s", exit2, vm2.Tail(40))
	}
	if exit2.CleanPowerOff() {
		t.Fatalf("a watchdog reset was reported as a clean power-off: %s", exit2)
	}
	if find(vm2, regexp.MustCompile(`^init: powering off`)) != "" {
		t.Errorf("init printed a clean shutdown before the watchdog reset")
	}
}

// qemu-aarch64 boots to ready under TCG.
func TestAarch64Boot(t *testing.T) {
	b, img := gatetest.Image(t, "qemu-aarch64")
	state := t.TempDir()
	vm := qemu.StartT(t, b, img,
		qemu.WithDisk(filepath.Join(state, "perm.raw"), 256<<20),
		qemu.WithTPM(filepath.Join(state, "tpm")),
		qemu.WithTimeout(5*time.Minute),
	)
	gatetest.MustSee(t, vm, `init: /perm mounted (/dev/vda, ext4, boot 1)`)
	t.Logf("arm64: %s", gatetest.MustSee(t, vm, "init: ready ("))
	gatetest.MustSee(t, vm, regexp.MustCompile(`^statusdump: steady\*\s+ready\b`))
}

func find(vm *qemu.VM, re *regexp.Regexp) string {
	for _, l := range vm.Lines() {
		if re.MatchString(l) {
			return l
		}
	}
	return ""
}

var stopRE = regexp.MustCompile(`^init: stopping (\S+)`)

func stopOrder(vm *qemu.VM) []string {
	var names []string
	for _, l := range vm.Lines() {
		if m := stopRE.FindStringSubmatch(l); m != nil {
			names = append(names, strings.TrimSuffix(m[1], ":"))
		}
	}
	return names
}

// sameOrder: want appears in got in this order.
func sameOrder(got, want []string) bool {
	i := 0
	for _, g := range got {
		if i < len(want) && g == want[i] {
			i++
		}
	}
	return i == len(want)
}
