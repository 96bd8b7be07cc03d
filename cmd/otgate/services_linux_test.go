//go:build linux

package main

import (
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/otgate/otgate/image"
)

// Every service the image links to /bin/otgate is one this binary runs.
func TestMultiCallRowsHaveMains(t *testing.T) {
	n := 0
	for _, rows := range [][]image.ServiceRow{image.ProductionServices, image.DemoServices, image.TestServices, image.TestPolicyServices} {
		for _, r := range rows {
			if !r.MultiCall {
				continue
			}
			n++
			if _, ok := serviceMains[path.Base(r.Service.Binary)]; !ok {
				t.Errorf("service %q: image links %s to /bin/otgate, but otgate has no main called %q",
					r.Service.Name, r.Service.Binary, path.Base(r.Service.Binary))
			}
		}
	}
	if n == 0 {
		t.Fatal("no multi-call rows in the image's tables")
	}
}

// Called through a link named after a service, the binary runs that
// service (its flags), not the CLI; under its own name it is the CLI.
func TestMultiCallDispatch(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "otgate")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	flags := map[string]string{ // a flag only that service has
		"otgate-identity": "-tpm-socket",
		"otgate-netconf":  "-uplink-mode",
		"otgate-overlay":  "-state",
		"otgate-proxy":    "-max-sessions-per-user",
		"otgate-segment":  "-interval",
		"otgate-timesync": "-panic-threshold",
	}
	if len(flags) != len(serviceMains) {
		t.Fatalf("test covers %d services, otgate has %d", len(flags), len(serviceMains))
	}
	for name, flag := range flags {
		link := filepath.Join(dir, name)
		if err := os.Symlink("otgate", link); err != nil {
			t.Fatal(err)
		}
		out, _ := exec.Command(link, "-h").CombinedOutput()
		if !strings.Contains(string(out), name+":\n") || !strings.Contains(string(out), flag+" ") {
			t.Errorf("%s -h: want its own usage with %s, got:\n%s", name, flag, out)
		}
	}
	out, _ := exec.Command(bin, "-h").CombinedOutput()
	if !strings.Contains(string(out), "usage: otgate <command>") {
		t.Errorf("otgate -h: want the CLI's usage, got:\n%s", out)
	}
}
