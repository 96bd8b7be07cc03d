package image

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/otgate/otgate/internal/bootcfg"
)

// kernelTree unpacks (or reuses) the real kernel package of a board.
func kernelTree(t *testing.T, boardName string) *moduleTree {
	t.Helper()
	b := testBoard(t, boardName)
	cache := cacheDir(t)
	deb, err := fetchPackage(context.Background(), b.Kernel, cache, newProgress(nil))
	if err != nil {
		t.Fatal(err)
	}
	u, err := unpackCached(deb, b.Kernel.SHA256, cache, []string{"boot/", "lib/modules/", "usr/lib/modules/"})
	if err != nil {
		t.Fatal(err)
	}
	mt, err := openModuleTree(u, b.Kernel.Release)
	if err != nil {
		t.Fatal(err)
	}
	return mt
}

func TestModuleClosureAndModulesDep(t *testing.T) {
	mt := kernelTree(t, "qemu-x86_64")
	c, err := mt.resolve([]string{"nft-ct", "virtio_net", "ext4"}, "test-board", "test-kernel")
	if err != nil {
		t.Fatal(err)
	}
	short := func(rel string) string { return strings.TrimSuffix(filepath.Base(rel), ".ko") }
	var names []string
	pos := map[string]int{}
	for i, rel := range c.Load {
		names = append(names, short(rel))
		pos[rel] = i
	}
	t.Logf("load order: %s", strings.Join(names, " "))
	// The closure, from the real kernel's .modinfo: nft_ct needs nf_tables
	// (-> nfnetlink, libcrc32c) and nf_conntrack (-> nf_defrag_ipv4/6);
	// libcrc32c and ext4 softdep on a crc32c implementation; virtio_net
	// needs net_failover -> failover.
	for _, want := range []string{"nft_ct", "nf_tables", "nfnetlink", "libcrc32c", "nf_conntrack", "nf_defrag_ipv4",
		"nf_defrag_ipv6", "virtio_net", "net_failover", "failover", "ext4", "jbd2", "mbcache", "crc16", "crc32c_generic"} {
		if !slices.Contains(names, want) {
			t.Errorf("closure lacks %s", want)
		}
	}
	// Load order: every dependency before its user.
	for rel, deps := range c.Deps {
		for _, d := range deps {
			if pos[d] > pos[rel] {
				t.Errorf("%s loads before its dependency %s", rel, d)
			}
		}
	}
	dep := string(mt.modulesDep(c))
	lines := strings.Split(strings.TrimSuffix(dep, "\n"), "\n")
	if len(lines) != len(c.Load) {
		t.Fatalf("modules.dep has %d lines for %d modules:\n%s", len(lines), len(c.Load), dep)
	}
	all := map[string][]string{}
	for _, l := range lines {
		mod, rest, ok := strings.Cut(l, ":")
		if !ok {
			t.Fatalf("modules.dep line %q has no colon", l)
		}
		if rest != "" && !strings.HasPrefix(rest, " ") || strings.HasSuffix(l, " ") {
			t.Errorf("modules.dep line %q: want %q or %q", l, "a.ko:", "a.ko: b.ko")
		}
		all[mod] = strings.Fields(rest)
	}
	// Cross-check with depmod (kmod) run on the whole unpacked tree: the
	// same dependency set for every module. depmod breaks ties between
	// unrelated dependencies by symbol order over the whole tree, so only
	// the set and the load-reverse property below are compared.
	if dm, err := exec.LookPath("depmod"); err != nil {
		t.Logf("depmod not installed (Debian kmod): cross-check skipped")
	} else {
		real := realModulesDep(t, dm, mt)
		for mod, deps := range all {
			want, ok := real[mod]
			if !ok {
				t.Errorf("depmod has no line for %s", mod)
				continue
			}
			if fmt.Sprint(sorted(deps)) != fmt.Sprint(sorted(want)) {
				t.Errorf("%s: dependencies %v, depmod says %v", mod, deps, want)
			}
		}
	}
	// Loading a line's dependencies from its end never loads a module
	// before one it depends on (the property kmodule and modprobe use).
	for mod, deps := range all {
		for i := range deps {
			for j := i + 1; j < len(deps); j++ {
				if slices.Contains(all[deps[j]], deps[i]) {
					t.Errorf("%s: %s listed before %s, which depends on it", mod, deps[i], deps[j])
				}
			}
		}
	}
}

func TestModuleMissingNamesBoardAndKernel(t *testing.T) {
	mt := kernelTree(t, "qemu-x86_64")
	_, err := mt.resolve([]string{"nf_tables", "e1000x"}, "some-board", "some-kernel 1.0")
	if err == nil {
		t.Fatal("resolve of a missing module succeeded")
	}
	for _, want := range []string{`"e1000x"`, "some-board", "some-kernel 1.0"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
}

func TestBoardModulesResolve(t *testing.T) {
	for _, name := range []string{"qemu-x86_64", "qemu-aarch64", "generic-x86_64"} {
		t.Run(name, func(t *testing.T) {
			b := testBoard(t, name)
			c, err := kernelTree(t, name).resolve(b.Modules, b.Name, b.Kernel.Package)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%d modules, built in: %v", len(c.Load), c.Builtin)
			checkLoadDeps(t, c)
		})
	}
}

// checkLoadDeps: init's dependency lists name only earlier modules, cover
// every modules.dep dependency and soft pre-dependency, and leave some
// modules free to load side by side (else there is nothing to gain).
func checkLoadDeps(t *testing.T, c *moduleClosure) {
	t.Helper()
	deps := c.loadDeps()
	if len(deps) != len(c.Load) {
		t.Fatalf("%d dependency lists for %d modules", len(deps), len(c.Load))
	}
	index := map[string]int{}
	for i, m := range c.Load {
		index[m] = i
	}
	roots := 0
	for i, m := range c.Load {
		got := map[int]bool{}
		for _, d := range deps[i] {
			if d >= i {
				t.Errorf("%s: dependency %d (%s) is not loaded before it", m, d, c.Load[d])
			}
			got[d] = true
		}
		for _, d := range c.Before[m] {
			if !got[index[d]] {
				t.Errorf("%s: needs %s, missing from its load dependencies %v", m, d, deps[i])
			}
		}
		if len(deps[i]) == 0 {
			roots++
		}
	}
	cfg := &bootcfg.Config{Modules: c.Load, ModuleDeps: deps}
	if err := cfg.Validate(nil); err != nil {
		t.Errorf("boot config refuses the dependencies: %v", err)
	}
	if roots < 2 {
		t.Errorf("only %d modules without dependencies: nothing loads side by side", roots)
	}
	for i, m := range c.Load {
		if strings.HasSuffix(m, "/ext4.ko") {
			var names []string
			for _, d := range deps[i] {
				names = append(names, path.Base(c.Load[d]))
			}
			for _, want := range []string{"jbd2.ko", "mbcache.ko", "crc16.ko", "crc32c_generic.ko"} {
				if !slices.Contains(names, want) {
					t.Errorf("ext4 loads after %v, want %s among them", names, want)
				}
			}
		}
	}
}

// realModulesDep runs depmod on a copy of the whole module tree.
func realModulesDep(t *testing.T, depmod string, mt *moduleTree) map[string][]string {
	t.Helper()
	root := t.TempDir()
	dst := filepath.Join(root, "lib", "modules", mt.release)
	os.MkdirAll(filepath.Dir(dst), 0o755)
	if out, err := exec.Command("cp", "-a", mt.dir, dst).CombinedOutput(); err != nil {
		t.Fatalf("copy module tree: %v: %s", err, out)
	}
	if out, err := exec.Command(depmod, "-b", root, mt.release).CombinedOutput(); err != nil {
		t.Fatalf("depmod: %v: %s", err, out)
	}
	b, err := os.ReadFile(filepath.Join(dst, "modules.dep"))
	if err != nil {
		t.Fatal(err)
	}
	m := map[string][]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		mod, rest, _ := strings.Cut(l, ":")
		m[mod] = strings.Fields(rest)
	}
	return m
}

func sorted(s []string) []string {
	s = append([]string(nil), s...)
	sort.Strings(s)
	return s
}
