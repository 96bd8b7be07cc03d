package gatetest

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/otgate/otgate/site"
)

// CompiledSite loads and compiles the site file src, as `otgate site
// apply` does.
func CompiledSite(t testing.TB, src string) []byte {
	t.Helper()
	s, data, err := site.Load(src, site.Options{})
	if err != nil {
		t.Fatal(err)
	}
	doc, err := site.Compile(s, src, data)
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

// ReplaceAppliedPolicy writes the compiled site file src over
// /policy/applied.cbor of a powered-off gate's /perm disk image (ext4,
// with debugfs): a valid policy the gate did not apply.
func ReplaceAppliedPolicy(t testing.TB, disk, src string) {
	t.Helper()
	other := filepath.Join(t.TempDir(), "offline-edit.cbor")
	if err := os.WriteFile(other, CompiledSite(t, src), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, req := range []string{"rm /policy/applied.cbor", "write " + other + " /policy/applied.cbor"} {
		if out, err := exec.Command("debugfs", "-w", "-R", req, disk).CombinedOutput(); err != nil {
			t.Fatalf("debugfs %s: %v\n%s", req, err, out)
		}
	}
}

// PermWithPolicy makes the gate's /perm disk (ext4, 256 MiB, in dir)
// holding the compiled site file as the applied policy, the way `otgate
// site apply` stores it (site.Store), so the first boot runs that policy.
func PermWithPolicy(t testing.TB, dir, siteFile string) string {
	t.Helper()
	doc := CompiledSite(t, siteFile)
	root := filepath.Join(dir, "perm-root")
	if err := site.Store(filepath.Join(root, "policy"), doc); err != nil {
		t.Fatal(err)
	}
	disk := filepath.Join(dir, "perm.raw")
	if err := os.WriteFile(disk, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(disk, 256<<20); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-d", root, disk).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4 -d: %v\n%s", err, out)
	}
	return disk
}
