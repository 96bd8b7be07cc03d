package qemu

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestTPMAndDiskVisibleInGuest boots each board with swtpm and a persistent
// disk and checks the guest sees /dev/tpm0, /dev/tpmrm0 and the disk, and
// that the TPM state directory is kept for the next boot.
func TestTPMAndDiskVisibleInGuest(t *testing.T) {
	for _, name := range []string{"qemu-x86_64", "qemu-aarch64"} {
		t.Run(name, func(t *testing.T) {
			b := mustBoard(t, name)
			requireQEMU(t, b, "swtpm")
			img := testImage(t, b)
			state := filepath.Join(t.TempDir(), "tpm")
			disk := filepath.Join(t.TempDir(), "perm.img")
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			vm := StartT(t, b, "", img, WithTPM(state), WithDisk(disk, 64<<20), WithCmdline("testinit.tpmek=1"))
			if vm.TPMPID() == 0 {
				t.Fatal("no swtpm process with WithTPM")
			}
			line, err := vm.WaitFor(ctx, "testinit: tpm")
			if err != nil {
				t.Fatal(err)
			}
			for _, dev := range []string{"/dev/tpm0", "/dev/tpmrm0"} {
				if !strings.Contains(line, dev) {
					t.Errorf("guest lacks %s: %q", dev, line)
				}
			}
			line, err = vm.WaitFor(ctx, "testinit: block")
			if err != nil {
				t.Fatal(err)
			}
			if !regexp.MustCompile(`\bvda\b`).MatchString(line) {
				t.Errorf("guest lacks the persistent disk vda: %q", line)
			}
			exit, err := vm.Wait(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if !exit.CleanPowerOff() {
				t.Fatalf("want clean power-off, got %s", exit)
			}
			st, err := os.Stat(disk)
			if err != nil || st.Size() != 64<<20 {
				t.Errorf("persistent disk %s: %v size %v, want 64 MiB", disk, err, st)
			}
			ek1 := ekDigest(ctx, t, vm)

			// Same state directory: the same TPM (same endorsement seed).
			vm2 := StartT(t, b, "", img, WithTPM(state), WithCmdline("testinit.tpmek=1"))
			if ek2 := ekDigest(ctx, t, vm2); ek2 != ek1 {
				t.Errorf("second boot with the same TPM state sees EK %s, first boot %s", ek2, ek1)
			}
			// A fresh state directory: another TPM. (Shows the check above can fail.)
			vm3 := StartT(t, b, "", img, WithTPM(filepath.Join(t.TempDir(), "tpm")), WithCmdline("testinit.tpmek=1"))
			if ek3 := ekDigest(ctx, t, vm3); ek3 == ek1 {
				t.Errorf("a fresh TPM state has the same EK %s", ek3)
			}
		})
	}
}

// TestWithoutTPMNoDevice is the control for the test above: without
// WithTPM the guest has no TPM, so seeing one really comes from swtpm.
func TestWithoutTPMNoDevice(t *testing.T) {
	b := mustBoard(t, "qemu-x86_64")
	requireQEMU(t, b)
	img := testImage(t, b)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	vm := StartT(t, b, "", img)
	line, err := vm.WaitFor(ctx, "testinit: tpm")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(line, "/dev/tpm") {
		t.Fatalf("guest has a TPM without WithTPM: %q", line)
	}
	if _, err := vm.Wait(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestWatchdogResetIsNotACleanShutdown arms the emulated i6300esb and stops
// petting it: QEMU must report the watchdog and a guest reset, which Exit
// tells apart from a clean power-off.
func TestWatchdogResetIsNotACleanShutdown(t *testing.T) {
	b := mustBoard(t, "qemu-x86_64")
	requireQEMU(t, b)
	img := testImage(t, b)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	vm := StartT(t, b, "", img, WithWatchdog(WatchdogReset),
		WithCmdline("testinit.watchdog=1", "testinit.then=wait"))
	if _, err := vm.WaitFor(ctx, "testinit: watchdog armed"); err != nil {
		t.Fatal(err)
	}
	exit, err := vm.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("exit: %s", exit)
	action, fired := exit.WatchdogFired()
	if !fired || action != "reset" {
		t.Errorf("want a WATCHDOG event with action reset, got %s", exit)
	}
	if r := exit.ShutdownReason(); r != "guest-reset" {
		t.Errorf("shutdown reason %q, want guest-reset", r)
	}
	if exit.CleanPowerOff() {
		t.Errorf("a watchdog reset counted as a clean power-off: %s", exit)
	}
}

// TestPowerdownPressesThePowerButton sends QMP system_powerdown to a guest
// waiting on the ACPI power button; the guest powers off cleanly.
func TestPowerdownPressesThePowerButton(t *testing.T) {
	b := mustBoard(t, "qemu-x86_64")
	requireQEMU(t, b)
	img := testImage(t, b)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	vm := StartT(t, b, "", img, WithCmdline("testinit.then=powerbutton"))
	if _, err := vm.WaitFor(ctx, "testinit: waiting for the power button"); err != nil {
		t.Fatal(err)
	}
	if err := vm.Powerdown(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := vm.WaitFor(ctx, "testinit: power button pressed"); err != nil {
		t.Fatal(err)
	}
	exit, err := vm.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !exit.CleanPowerOff() {
		t.Fatalf("want clean power-off, got %s", exit)
	}
	if exit.Events[0].Name != "POWERDOWN" {
		t.Errorf("first event %s, want POWERDOWN", exit.Events[0])
	}
}

var ekRE = regexp.MustCompile(`^testinit: ek ([0-9a-f]{16})$`)

func ekDigest(ctx context.Context, t *testing.T, vm *VM) string {
	t.Helper()
	line, err := vm.WaitFor(ctx, regexp.MustCompile(`^testinit: ek `))
	if err != nil {
		t.Fatal(err)
	}
	m := ekRE.FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("TPM endorsement key: %q", line)
	}
	return m[1]
}
