package bootmeasure

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/otgate/otgate/internal/bootcfg"
)

// Services that are links to one multi-call binary measure exactly as if
// each were its own copy of it (the binary is hashed once, the stream
// names it per link); a changed byte in the binary changes the digest.
func TestLinkedServicesMeasureLikeCopies(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	initBin := write("init", "init binary")
	cfgPath := write("boot.cbor", "boot config")
	multi := write("otgate", "multi-call binary")
	for _, l := range []string{"otgate-a", "otgate-b"} {
		if err := os.Symlink("otgate", filepath.Join(dir, l)); err != nil {
			t.Fatal(err)
		}
	}
	copyA, copyB := write("copy-a", "multi-call binary"), write("copy-b", "multi-call binary")
	other := write("other", "multi-call binarY")
	digest := func(bins ...string) [32]byte {
		t.Helper()
		cfg := &bootcfg.Config{}
		for i, b := range bins {
			cfg.Services = append(cfg.Services, bootcfg.Service{Name: string(rune('a' + i)), Binary: b})
		}
		m, err := Compute(Inputs{Init: initBin, Config: cfg, ConfigPath: cfgPath, Policy: filepath.Join(dir, "none")})
		if err != nil {
			t.Fatal(err)
		}
		return m.Digest
	}
	linked := digest(multi, filepath.Join(dir, "otgate-a"), filepath.Join(dir, "otgate-b"))
	copies := digest(multi, copyA, copyB)
	if linked != copies {
		t.Errorf("links measure %x, copies %x: want equal", linked, copies)
	}
	if changed := digest(multi, filepath.Join(dir, "otgate-a"), other); changed == linked {
		t.Error("a changed binary measured the same")
	}
	if fewer := digest(multi, filepath.Join(dir, "otgate-a")); fewer == linked {
		t.Error("one link fewer measured the same")
	}
}

// Digests hashed ahead of time give the same measurement; a file changed
// after Prehash (new size) is hashed again, not taken from the cache; an
// unreadable file is left to Compute, which names it.
func TestPrehash(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	initBin, cfgPath := write("init", "init binary"), write("boot.cbor", "boot config")
	svc := write("otgate", "multi-call binary")
	in := func(pre *Prehashed) Inputs {
		return Inputs{Init: initBin, ConfigPath: cfgPath, Policy: filepath.Join(dir, "none"), Prehashed: pre,
			Config: &bootcfg.Config{Services: []bootcfg.Service{{Name: "a", Binary: svc}}}}
	}
	plain, err := Compute(in(nil))
	if err != nil {
		t.Fatal(err)
	}
	pre, err := Compute(in(Prehash(initBin, svc, filepath.Join(dir, "missing"))))
	if err != nil {
		t.Fatal(err)
	}
	if pre.Digest != plain.Digest {
		t.Errorf("prehashed %x, plain %x", pre.Digest, plain.Digest)
	}
	// Links to one file (the appliance's services) are hashed once, each
	// distinct file in its own goroutine.
	link := filepath.Join(dir, "otgate-proxy")
	if err := os.Symlink(svc, link); err != nil {
		t.Fatal(err)
	}
	linked := Prehash(initBin, svc, link, initBin)
	<-linked.done
	if len(linked.files) != 2 {
		t.Errorf("Prehash of two files, a link and a repeat hashed %d files, want 2", len(linked.files))
	}
	if got, err := Compute(in(linked)); err != nil || got.Digest != plain.Digest {
		t.Errorf("with links prehashed: %x, %v; plain %x", got.Digest, err, plain.Digest)
	}
	p := Prehash(initBin, svc)
	write("otgate", "multi-call binary, changed")
	changed, err := Compute(in(p))
	if err != nil {
		t.Fatal(err)
	}
	fresh, err := Compute(in(nil))
	if err != nil {
		t.Fatal(err)
	}
	if changed.Digest != fresh.Digest || changed.Digest == plain.Digest {
		t.Errorf("after a change: prehashed %x, fresh %x, before %x: the stale digest was used", changed.Digest, fresh.Digest, plain.Digest)
	}
	bad := in(Prehash(initBin))
	bad.Config.Services[0].Binary = filepath.Join(dir, "missing")
	if _, err := Compute(bad); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("Compute with a missing service binary: %v", err)
	}
}
