package gatetest

import (
	"regexp"
	"testing"
	"time"

	"github.com/otgate/otgate/qemu"
)

// MustSee waits (up to three minutes: TCG on a loaded 2-core machine) for a
// console line matching pattern (a prefix string or a *regexp.Regexp) and
// returns it; the test fails with the console's tail otherwise.
func MustSee(t testing.TB, vm *qemu.VM, pattern any) string {
	t.Helper()
	line, err := vm.WaitFor(Context(t, 3*time.Minute), pattern)
	if err != nil {
		t.Fatalf("waiting for %v: %v\nconsole tail:\n%s", pattern, err, vm.Tail(80))
	}
	return line
}

// Submatch waits for a line matching re and returns its first submatch.
func Submatch(t testing.TB, vm *qemu.VM, re *regexp.Regexp) string {
	t.Helper()
	return re.FindStringSubmatch(MustSee(t, vm, re))[1]
}

// PowerOff presses the ACPI power button and requires a clean guest
// power-off (QEMU exit 0, no watchdog).
func PowerOff(t testing.TB, vm *qemu.VM) {
	t.Helper()
	ctx := Context(t, 2*time.Minute)
	if err := vm.Powerdown(ctx); err != nil {
		t.Fatalf("powerdown: %v", err)
	}
	exit, err := vm.Wait(ctx)
	if err != nil {
		t.Fatalf("wait: %v", err)
	}
	if !exit.CleanPowerOff() {
		t.Fatalf("no clean power-off: %s\n%s", exit, vm.Tail(40))
	}
}
