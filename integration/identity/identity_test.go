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
	measuredRE = regexp.MustCompile(`^init: measured boot into PCR 15 \(([0-9a-f]{16}), [0-9.]+s\)$`)
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
	measured1 := gatetest.Submatch(t, vm, measuredRE)
	gatetest.MustSee(t, vm, "identity: identity: first boot: no identity in /perm/identity, creating a new device identity")
	device := gatetest.Submatch(t, vm, deviceRE)
	gatetest.MustSee(t, vm, "trust: trust: "+device+" (TPM key) is not in quarantine")
	gatetest.MustSee(t, vm, "init: trust done (")
	t.Logf("boot 1: %s, measurement %s", device, measured1)
	gatetest.PowerOff(t, vm)

	// Boot 2: the same device, the same measurement, no quarantine.
	vm = qemu.StartT(t, b, img, opts...)
	if m := gatetest.Submatch(t, vm, measuredRE); m != measured1 {
		t.Errorf("boot 2 measured %s, boot 1 %s: the same image and policy must measure the same", m, measured1)
	}
	if d := gatetest.Submatch(t, vm, deviceRE); d != device {
		t.Errorf("boot 2 is device %s, boot 1 was %s", d, device)
	}
	gatetest.MustSee(t, vm, "init: trust done (")
	if l := find(vm, "identity: identity: first boot"); l != "" {
		t.Errorf("boot 2 created a new identity: %q", l)
	}
	gatetest.PowerOff(t, vm)

	// Boot 3: another measurement: quarantine.
	vm = qemu.StartT(t, b, img, append(opts, qemu.WithCmdline("otgate.test.measure_extra=x"))...)
	gatetest.MustSee(t, vm, `init: test hook: otgate.test.measure_extra="x" mixed into the boot measurement`)
	if m := gatetest.Submatch(t, vm, measuredRE); m == measured1 {
		t.Errorf("boot 3 measured %s like boot 1 despite the test hook", m)
	}
	if d := gatetest.Submatch(t, vm, deviceRE); d != device {
		t.Errorf("boot 3 is device %s, boot 1 was %s", d, device)
	}
	why := gatetest.MustSee(t, vm, regexp.MustCompile(`^identity: identity: GATE IN QUARANTINE: .*PCR 15.* -- what to do: .*boot the approved image`))
	t.Logf("boot 3: %s", why)
	gatetest.MustSee(t, vm, "trust: trust: GATE IN QUARANTINE: ")
	gatetest.MustSee(t, vm, "trust: trust: what to do: ")
	gatetest.MustSee(t, vm, "init: trust exited (status 100), asks not to be restarted: marked failed: QUARANTINE: ")
	gatetest.MustSee(t, vm, "init: segment ready (") // the deny ruleset is enforced all the same
	row := gatetest.MustSee(t, vm, regexp.MustCompile(`^statusdump: trust\s+failed\s.*QUARANTINE: `))
	t.Logf("status: %s", row)
	gatetest.MustSee(t, vm, regexp.MustCompile(`^statusdump: up .* ready: no$`))
	t.Logf("PID 1 memory: %s", gatetest.MustSee(t, vm, regexp.MustCompile(`^statusdump: init\s+rss `)))
	for _, l := range vm.Lines() {
		if strings.HasPrefix(l, "init: trust exited (status 100), restart") || strings.HasPrefix(l, "init: ready (") ||
			regexp.MustCompile(`^init: proxy (ready|exited)`).MatchString(l) || strings.HasPrefix(l, "proxy: ") {
			t.Errorf("in quarantine: %q", l)
		}
	}
	if strings.Contains(strings.Join(vm.Lines(), "\n"), "init: proxy") {
		gatetest.MustSee(t, vm, "init: proxy: not started: dependency trust failed")
	}
	gatetest.PowerOff(t, vm)
}

func find(vm *qemu.VM, prefix string) string {
	for _, l := range vm.Lines() {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}
