package board

import (
	"strings"
	"testing"
)

// Every defined board is valid and has a TPM (none runs in dev mode).
func TestDefinedBoardsValidWithTPM(t *testing.T) {
	for _, name := range Names() {
		b, err := Lookup(name)
		if err != nil {
			t.Fatal(err)
		}
		if b.TPM.None || b.TPM.Device == "" {
			t.Errorf("board %s: TPM %+v, want a TPM device and not None", name, b.TPM)
		}
	}
}

// register refuses a definition that says it has no TPM and names one.
func TestRegisterRefusesDevModeWithTPM(t *testing.T) {
	defer func() {
		r := recover()
		if s, _ := r.(string); !strings.Contains(s, "board bad-dev: TPM.None") || !strings.Contains(s, "TPM.Device") {
			t.Fatalf("register panicked with %v, want the board and the conflicting field named", r)
		}
		if _, ok := boards["bad-dev"]; ok {
			t.Fatal("invalid board registered")
		}
	}()
	register(&Board{Name: "bad-dev", TPM: TPM{None: true, Device: "/dev/tpmrm0"}})
}

// A board that ships iTCO_wdt ships the drivers that register its device:
// iTCO_wdt matches no PCI or ACPI id itself, and the kernel cannot load
// lpc_ich or i2c_i801 on demand (no modprobe in the image).
func TestITCOWatchdogHasItsDevice(t *testing.T) {
	has := func(b *Board, m string) bool {
		for _, x := range b.Modules {
			if strings.ReplaceAll(x, "-", "_") == m {
				return true
			}
		}
		return false
	}
	for _, name := range Names() {
		b, err := Lookup(name)
		if err != nil {
			t.Fatal(err)
		}
		if !has(b, "iTCO_wdt") {
			continue
		}
		for _, m := range []string{"lpc_ich", "i2c_i801"} {
			if !has(b, m) {
				t.Errorf("board %s ships iTCO_wdt without %s: no iTCO watchdog device on the chipsets %s serves", name, m, m)
			}
		}
	}
}

// The serial console is the last console= (PID 1's /dev/console), with
// the board's options: the hardware board at 115200 8N1, the QEMU
// boards at the kernel's default.
func TestKernelCmdlineConsole(t *testing.T) {
	for name, want := range map[string]string{
		"generic-x86_64": " console=ttyS0,115200n8",
		"qemu-x86_64":    " console=ttyS0",
		"qemu-aarch64":   " console=ttyAMA0",
	} {
		b, err := Lookup(name)
		if err != nil {
			t.Fatal(err)
		}
		if got := b.KernelCmdline(); !strings.HasSuffix(got, want) {
			t.Errorf("board %s: command line %q, want it to end in %q", name, got, want)
		}
	}
}
