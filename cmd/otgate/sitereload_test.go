//go:build linux

package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"github.com/otgate/otgate/internal/policyreload"
)

// After storing, apply reports on every service; where none runs (no
// sockets) each line says so and what happens instead, and the apply
// succeeds. The real services' reloads are tested in services/proxy
// (TestApplyReloadsTheProxy) and in QEMU (integration/policy).
func TestApplyReportsServicesNotRunning(t *testing.T) {
	dir := t.TempDir()
	run := filepath.Join(dir, "run")
	sockets := policyreload.Sockets{Proxy: filepath.Join(run, "proxy", "admin.sock"), Segment: filepath.Join(run, "segment.sock"),
		Overlay: filepath.Join(run, "overlay.sock"), Netconf: filepath.Join(run, "netconf.sock")}
	var out bytes.Buffer
	err := applySite(&out, otherSite(t, "reload-site"), applyTarget{dir: filepath.Join(dir, "policy"),
		bootConfig: filepath.Join(dir, "no-boot.cbor"), services: &sockets}, false)
	if err != nil {
		t.Fatalf("apply: %v\n%s", err, out.String())
	}
	for _, want := range []string{
		"site: proxy: not running: no admin socket at " + sockets.Proxy + "; it loads the new policy when it starts",
		"site: segment: not running: no socket at " + sockets.Segment,
		"site: overlay: not running: no socket at " + sockets.Overlay,
		"site: netconf: not running: no socket at " + sockets.Netconf,
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}
