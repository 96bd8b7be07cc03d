// Package identity holds the QEMU integration test of the gate's TPM-bound
// identity across reboots: the same device on every boot of the same
// image with the same swtpm state and /perm, and quarantine when the boot
// measurement changes.
package identity

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/otgate/otgate/integration/internal/gatetest"
	"github.com/otgate/otgate/qemu"
)

var (
	deviceRE   = regexp.MustCompile(`^identity: identity: device identity (spiffe://\S+/gate/[0-9a-f]+) \(TPM key, /dev/tpmrm0\)`)
	measuredRE = regexp.MustCompile(`^init: measured boot into PCR 15 \(([0-9a-f]{16})\)$`)
)

// The story of one gate over three boots with the same disk and TPM:
// the first boot creates the device identity and seals to its measurement;
// the second boot measures the same (the default policy stored on boot 1
// measures like the image's copy boot 1 measured) and is the same device,
// not in quarantine; the third boot, with a changed measurement (the test
// hook stands for another image), is still the same device but in
// quarantine: the console says why and what to do, the trust gate fails
// without restart so nothing that depends on it (the proxy) starts, the
// deny ruleset stays, and the status table shows it.
func TestIdentityAcrossRebootsAndQuarantine(t *testing.T) {
	b, img := gatetest.Image(t, "qemu-x86_64")
	state := t.TempDir()
	opts := []qemu.Option{
		qemu.WithDisk(filepath.Join(state, "perm.raw"), 256<<20),
		qemu.WithTPM(filepath.Join(state, "tpm")),
		qemu.WithTimeout(5 * time.Minute),
	}

	// Boot 1: a new device.
	vm := qemu.StartT(t, b, img, opts...)
	measured1 := submatch(t, vm, measuredRE)
	mustSee(t, vm, "identity: identity: first boot: no identity in /perm/identity, creating a new device identity")
	device := submatch(t, vm, deviceRE)
	mustSee(t, vm, "trust: trust: "+device+" (TPM key) is not in quarantine")
	mustSee(t, vm, "init: trust done (")
	t.Logf("boot 1: %s, measurement %s", device, measured1)
	powerOff(t, vm)

	// Boot 2: the same device, the same measurement, no quarantine.
	vm = qemu.StartT(t, b, img, opts...)
	if m := submatch(t, vm, measuredRE); m != measured1 {
		t.Errorf("boot 2 measured %s, boot 1 %s: the same image and policy must measure the same", m, measured1)
	}
	if d := submatch(t, vm, deviceRE); d != device {
		t.Errorf("boot 2 is device %s, boot 1 was %s", d, device)
	}
	mustSee(t, vm, "init: trust done (")
	if l := find(vm, "identity: identity: first boot"); l != "" {
		t.Errorf("boot 2 created a new identity: %q", l)
	}
	powerOff(t, vm)

	// Boot 3: another measurement: quarantine.
	vm = qemu.StartT(t, b, img, append(opts, qemu.WithCmdline("otgate.test.measure_extra=x"))...)
	mustSee(t, vm, `init: test hook: otgate.test.measure_extra="x" mixed into the boot measurement`)
	if m := submatch(t, vm, measuredRE); m == measured1 {
		t.Errorf("boot 3 measured %s like boot 1 despite the test hook", m)
	}
	if d := submatch(t, vm, deviceRE); d != device {
		t.Errorf("boot 3 is device %s, boot 1 was %s", d, device)
	}
	why := mustSee(t, vm, regexp.MustCompile(`^identity: identity: GATE IN QUARANTINE: .*PCR 15.* -- what to do: .*boot the approved image`))
	t.Logf("boot 3: %s", why)
	mustSee(t, vm, "trust: trust: GATE IN QUARANTINE: ")
	mustSee(t, vm, "trust: trust: what to do: ")
	mustSee(t, vm, "init: trust exited (status 100), asks not to be restarted: marked failed: QUARANTINE: ")
	mustSee(t, vm, "init: segment ready (") // the deny ruleset is enforced all the same
	row := mustSee(t, vm, regexp.MustCompile(`^statusdump: trust\s+failed\s.*QUARANTINE: `))
	t.Logf("status: %s", row)
	mustSee(t, vm, regexp.MustCompile(`^statusdump: up .* ready: no$`))
	t.Logf("PID 1 memory: %s", mustSee(t, vm, regexp.MustCompile(`^statusdump: init\s+rss `)))
	for _, l := range vm.Lines() {
		if strings.HasPrefix(l, "init: trust exited (status 100), restart") || strings.HasPrefix(l, "init: ready (") ||
			regexp.MustCompile(`^init: proxy (ready|exited)`).MatchString(l) || strings.HasPrefix(l, "proxy: ") {
			t.Errorf("in quarantine: %q", l)
		}
	}
	if strings.Contains(strings.Join(vm.Lines(), "\n"), "init: proxy") {
		mustSee(t, vm, "init: proxy: not started: dependency trust failed")
	}
	powerOff(t, vm)
}

func submatch(t *testing.T, vm *qemu.VM, re *regexp.Regexp) string {
	t.Helper()
	return re.FindStringSubmatch(mustSee(t, vm, re))[1]
}

func find(vm *qemu.VM, prefix string) string {
	for _, l := range vm.Lines() {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

// mustSee waits (up to three minutes: TCG on a loaded 2-core machine) for a
// console line matching pattern (a prefix string or a regexp).
func mustSee(t *testing.T, vm *qemu.VM, pattern any) string {
	t.Helper()
	ctx := gatetest.Context(t, 3*time.Minute)
	line, err := vm.WaitFor(ctx, pattern)
	if err != nil {
		t.Fatalf("waiting for %v: %v\nconsole tail:\n%s", pattern, err, vm.Tail(60))
	}
	return line
}

func powerOff(t *testing.T, vm *qemu.VM) {
	t.Helper()
	ctx := gatetest.Context(t, 2*time.Minute)
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
