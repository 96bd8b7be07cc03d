package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/otgate/otgate/internal/bootcfg"
)

// The boot measurement changes with every measured input and only with
// them; a first boot (default policy not yet applied) measures the same
// as the boots after it (the default stored as the applied policy).
func TestMeasureBoot(t *testing.T) {
	root := t.TempDir()
	write := func(p, data string) {
		t.Helper()
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(data), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write("init", "init binary")
	write("bin/a", "service a")
	write("bin/b", "service b")
	write("etc/otgate/boot.cbor", "boot config")
	write(defaultPolicy, "default policy")
	cfg := &bootcfg.Config{Services: []bootcfg.Service{
		{Name: "a", Binary: filepath.Join(root, "bin/a")},
		{Name: "a2", Binary: filepath.Join(root, "bin/a")}, // same binary: measured once
		{Name: "b", Binary: filepath.Join(root, "bin/b")},
	}}
	digest := func(extra string) string {
		t.Helper()
		m, err := measureBoot(cfg, root, filepath.Join(root, "init"), filepath.Join(root, "etc/otgate/boot.cbor"), extra, nil)
		if err != nil {
			t.Fatal(err)
		}
		return string(m.Digest[:])
	}
	first := digest("")
	if digest("") != first {
		t.Fatal("the same boot measures differently")
	}
	write(appliedPolicy, "default policy")
	if digest("") != first {
		t.Fatal("storing the default policy as the applied one changed the measurement")
	}
	seen := map[string]string{"first": first}
	check := func(what string, d string) {
		t.Helper()
		for k, v := range seen {
			if v == d {
				t.Fatalf("%s measures like %s", what, k)
			}
		}
		seen[what] = d
	}
	write(appliedPolicy, "operator's policy")
	check("another applied policy", digest(""))
	check("test hook string", digest("x"))
	write("bin/b", "service b, tampered")
	check("another service binary", digest(""))
	write("etc/otgate/boot.cbor", "boot config 2")
	check("another boot config", digest(""))
	write("init", "init binary 2")
	check("another init", digest(""))
	// Swapping the service order swaps the measured order.
	cfg.Services[0], cfg.Services[2] = cfg.Services[2], cfg.Services[0]
	check("another service order", digest(""))

	os.Remove(filepath.Join(root, "bin/a"))
	if _, err := measureBoot(cfg, root, filepath.Join(root, "init"), filepath.Join(root, "etc/otgate/boot.cbor"), "", nil); err == nil ||
		!strings.Contains(err.Error(), "measure service a") {
		t.Fatalf("missing binary: %v", err)
	}
}
