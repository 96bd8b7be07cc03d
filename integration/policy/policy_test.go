// Package policy holds the QEMU integration test of an authorized policy
// change on a running gate: `otgate site apply` seals the data key for the
// next boot, the running services take the new policy at once, the next
// boot enforces it and is not in quarantine, and an offline edit of the
// stored policy still is.
package policy

import (
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/otgate/otgate/image"
	"github.com/otgate/otgate/integration/internal/gatetest"
	"github.com/otgate/otgate/qemu"
)

var measuredRE = regexp.MustCompile(`^init: measured boot into PCR 15 \(([0-9a-f]{16}), [0-9.]+s\)$`)

// The story of one gate over three boots with the same disk and TPM.
// Boot 1 runs the default policy; once the proxy is up, the testapply row
// (test images only, asked by the otgate.test.apply_site hook) applies the
// second site file, which adds the PLC rtu-2: the data key is sealed for
// the next boot, the proxy reloads through its admin socket, and segment,
// overlay and netconf report the new policy, each on the console. Boot 2,
// without the hook, measures the new policy, unseals from the next-boot
// slot, is not in quarantine, and its services enforce the second site
// from the start. Boot 3 follows an offline edit of the stored policy (the
// default site written back with debugfs): quarantine, no proxy.
func TestApplyOnARunningGate(t *testing.T) {
	if _, err := exec.LookPath("debugfs"); err != nil {
		t.Skip("debugfs not installed (e2fsprogs; make test installs it)")
	}
	b, img := gatetest.Variant(t, "qemu-x86_64", "policy", image.WithTestServices(true))
	state := t.TempDir()
	disk := filepath.Join(state, "perm.raw")
	opts := []qemu.Option{
		qemu.WithDisk(disk, 256<<20),
		qemu.WithTPM(filepath.Join(state, "tpm")),
		qemu.WithTimeout(5 * time.Minute),
	}

	// Boot 1: the default policy, then the change applied while running.
	start := time.Now()
	vm := qemu.StartT(t, b, img, append(opts, qemu.WithCmdline("otgate.test.apply_site="+image.TestSiteFile))...)
	measured1 := gatetest.Submatch(t, vm, measuredRE)
	gatetest.MustSee(t, vm, regexp.MustCompile(`^segment: segment: enforcing policy /perm/policy/applied\.cbor from site\.yaml \(`))
	gatetest.MustSee(t, vm, "testapply: testapply: test hook: otgate site apply "+image.TestSiteFile)
	sealed := gatetest.MustSee(t, vm, regexp.MustCompile(`^testapply: site: data key sealed for the next boot \(measurement [0-9a-f]{16}\)`))
	gatetest.MustSee(t, vm, regexp.MustCompile(`^testapply: site: applied demo-plant from `+regexp.QuoteMeta(image.TestSiteFile)+`: 1 zones, 3 assets, 0 exceptions`))
	for _, want := range []string{
		`^testapply: site: proxy: reloaded: decides by /perm/policy/applied\.cbor \(site-2\.yaml\); 0 live sessions ended`,
		`^testapply: site: segment: reloaded: enforces policy sha256 [0-9a-f]{12}: table inet otgate: `,
		`^testapply: site: overlay: reloaded: serves policy sha256 [0-9a-f]{12}: 3 overlay addresses`,
		`^testapply: site: netconf: reloaded: configured for policy sha256 [0-9a-f]{12}: `,
	} {
		t.Logf("boot 1: %s", gatetest.MustSee(t, vm, regexp.MustCompile(want)))
	}
	gatetest.MustSee(t, vm, "testapply: testapply: APPLIED "+image.TestSiteFile)
	// The services' own words.
	gatetest.MustSee(t, vm, "proxy: proxy: admin reload (otgate site apply): policy reloaded from /perm/policy/applied.cbor (site-2.yaml), 0 sessions ended")
	gatetest.MustSee(t, vm, regexp.MustCompile(`^segment: segment: policy file changed: now enforcing policy /perm/policy/applied\.cbor from site-2\.yaml \(sha256 [0-9a-f]{12}\): 3 assets`))
	gatetest.MustSee(t, vm, regexp.MustCompile(`^overlay: .*overlay: rtu-2 \(zone cell-1\) -> 100\.64\.`))
	t.Logf("boot 1: %s; applied and reloaded after %s", sealed, time.Since(start).Round(time.Second))
	gatetest.PowerOff(t, vm)

	// Boot 2: the new policy measured, unsealed from the next-boot slot.
	start = time.Now()
	vm = qemu.StartT(t, b, img, opts...)
	measured2 := gatetest.Submatch(t, vm, measuredRE)
	if measured2 == measured1 {
		t.Errorf("boot 2 measured %s like boot 1: the applied policy must change the measurement", measured2)
	}
	if !strings.Contains(sealed, measured2) {
		t.Errorf("boot 2 measured %s, the apply predicted %q", measured2, sealed)
	}
	gatetest.MustSee(t, vm, regexp.MustCompile(`^identity: .*authorized configuration change: the data key unsealed from the next-boot slot`))
	gatetest.MustSee(t, vm, "init: trust done (")
	gatetest.MustSee(t, vm, regexp.MustCompile(`^segment: segment: enforcing policy /perm/policy/applied\.cbor from site-2\.yaml \(sha256 [0-9a-f]{12}\)`))
	gatetest.MustSee(t, vm, regexp.MustCompile(`^proxy: otgate-proxy: listening on \S+:8443`))
	gatetest.MustSee(t, vm, "testapply: testapply: no otgate.test.apply_site hook; nothing applied")
	t.Logf("boot 2: %s after %s", gatetest.MustSee(t, vm, "init: ready ("), time.Since(start).Round(time.Second))
	for _, l := range vm.Lines() {
		if strings.Contains(l, "QUARANTINE") {
			t.Errorf("boot 2 after an authorized apply: %q", l)
		}
	}
	gatetest.PowerOff(t, vm)

	// Boot 3: the stored policy edited offline (the default site written
	// back): no next-boot slot matches, quarantine, the proxy stays down.
	gatetest.ReplaceAppliedPolicy(t, disk, filepath.Join(gatetest.RepoRoot(t), "rootfs", "etc", "otgate", "site.yaml")) // the default site: valid, but not applied
	start = time.Now()
	vm = qemu.StartT(t, b, img, opts...)
	if m := gatetest.Submatch(t, vm, measuredRE); m == measured2 {
		t.Errorf("boot 3 measured %s like boot 2 despite the offline edit", m)
	}
	gatetest.MustSee(t, vm, regexp.MustCompile(`^identity: .*GATE IN QUARANTINE`))
	t.Logf("boot 3: %s after %s", gatetest.MustSee(t, vm, regexp.MustCompile(`^init: proxy: not started: dependency \S+ failed`)), time.Since(start).Round(time.Second))
	for _, l := range vm.Lines() {
		if strings.HasPrefix(l, "proxy: ") || strings.HasPrefix(l, "init: ready (") {
			t.Errorf("in quarantine: %q", l)
		}
	}
	gatetest.PowerOff(t, vm)
}
