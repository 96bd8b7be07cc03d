package image

import (
	"bufio"
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// ErrNoModule is wrapped by errors about a board module the kernel does not
// have.
var ErrNoModule = errors.New("no such kernel module")

// moduleTree indexes the modules of one unpacked kernel release.
type moduleTree struct {
	release string
	pkg     *unpacked
	base    string            // "lib/modules/<release>" in pkg
	dir     string            // the same on disk
	byName  map[string]string // normalized name -> path relative to dir
	builtin map[string]bool   // normalized names built into the kernel
	order   map[string]int    // relative path -> line in modules.order
	aliases map[string][]string
	// content holds the verified bytes of the modules read in full.
	content map[string][]byte
}

// moduleName normalizes a module name: '-' and '_' are the same to the
// kernel.
func moduleName(s string) string {
	return strings.ReplaceAll(strings.TrimSuffix(filepath.Base(s), ".ko"), "-", "_")
}

// openModuleTree indexes lib/modules/<release> (or usr/lib/...) of the
// unpacked kernel package: the modules its listing names, not whatever
// else the directory holds.
func openModuleTree(pkg *unpacked, release string) (*moduleTree, error) {
	t := &moduleTree{release: release, pkg: pkg, byName: map[string]string{}, builtin: map[string]bool{},
		order: map[string]int{}, content: map[string][]byte{}}
	names := pkg.names()
	for _, d := range []string{"lib/modules/", "usr/lib/modules/"} {
		prefix := d + release + "/"
		i := sort.SearchStrings(names, prefix)
		if i < len(names) && strings.HasPrefix(names[i], prefix) {
			t.base = d + release
			t.dir = pkg.abs(t.base)
			break
		}
	}
	if t.base == "" {
		return nil, fmt.Errorf("kernel package has no lib/modules/%s", release)
	}
	for _, n := range names {
		rel, ok := strings.CutPrefix(n, t.base+"/")
		if !ok || !strings.HasSuffix(rel, ".ko") {
			continue
		}
		m := moduleName(rel)
		if prev, dup := t.byName[m]; dup {
			return nil, fmt.Errorf("index modules of %s: module %s exists twice: %s and %s", release, m, prev, rel)
		}
		t.byName[m] = rel
	}
	if err := t.readList("modules.builtin", func(i int, rel string) { t.builtin[moduleName(rel)] = true }); err != nil {
		return nil, err
	}
	if err := t.readList("modules.order", func(i int, rel string) { t.order[rel] = i }); err != nil {
		return nil, err
	}
	return t, nil
}

// readFile reads the file rel (relative to the release directory) of the
// package, verified.
func (t *moduleTree) readFile(rel string) ([]byte, error) {
	return t.pkg.readFile(t.base + "/" + rel)
}

// module returns the verified content of the module rel.
func (t *moduleTree) module(rel string) ([]byte, error) {
	if b, ok := t.content[rel]; ok {
		return b, nil
	}
	b, err := t.readFile(rel)
	if err != nil {
		return nil, err
	}
	t.content[rel] = b
	return b, nil
}

// readList calls f for each line of the optional list file name.
func (t *moduleTree) readList(name string, f func(i int, line string)) error {
	b, err := t.readFile(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for i := 0; sc.Scan(); i++ {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			f(i, l)
		}
	}
	return sc.Err()
}

// modinfo holds the fields of a module's .modinfo section the builder
// uses.
type modinfo struct {
	depends []string // hard dependencies (depends=)
	softPre []string // softdep=pre: names or aliases, loaded first
	aliases []string
}

// readModinfo reads the .modinfo section of a module (name is for
// errors).
func readModinfo(name string, r io.ReaderAt) (*modinfo, error) {
	f, err := elf.NewFile(r)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("%s: no .modinfo section", name)
	}
	data, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("%s: .modinfo: %w", name, err)
	}
	mi := &modinfo{}
	for _, kv := range bytes.Split(data, []byte{0}) {
		k, v, ok := strings.Cut(string(kv), "=")
		if !ok {
			continue
		}
		switch k {
		case "depends":
			for _, d := range strings.Split(v, ",") {
				if d != "" {
					mi.depends = append(mi.depends, d)
				}
			}
		case "softdep":
			// "pre: a b post: c"
			pre := false
			for _, w := range strings.Fields(v) {
				switch w {
				case "pre:":
					pre = true
				case "post:":
					pre = false
				default:
					if pre {
						mi.softPre = append(mi.softPre, w)
					}
				}
			}
		case "alias":
			mi.aliases = append(mi.aliases, v)
		}
	}
	return mi, nil
}

// lookupSoft resolves a softdep name: a module name, else every module
// with that exact alias (e.g. "crc32c": crc32c_generic, crc32c-intel).
func (t *moduleTree) lookupSoft(name string) ([]string, error) {
	if rel, ok := t.byName[moduleName(name)]; ok {
		return []string{rel}, nil
	}
	if t.aliases == nil {
		t.aliases = map[string][]string{}
		var rels []string
		for _, rel := range t.byName {
			rels = append(rels, rel)
		}
		sort.Strings(rels)
		// Only the .modinfo of each module is read here, not its whole
		// content, so it is not verified by sha256 (that would hash the
		// whole tree at every build): each module this picks is read in
		// full, verified, when it joins the closure.
		for _, rel := range rels {
			mi, err := t.partialModinfo(rel)
			if err != nil {
				return nil, err
			}
			for _, a := range mi.aliases {
				t.aliases[a] = append(t.aliases[a], rel)
			}
		}
	}
	return t.aliases[name], nil
}

// partialModinfo reads the .modinfo of module rel from the cache without
// reading the whole file: the file must have its unpacked size, and a
// module that does not parse is a damaged cache (a module of the verified
// package always does).
func (t *moduleTree) partialModinfo(rel string) (*modinfo, error) {
	if err := t.pkg.checkSize(t.base + "/" + rel); err != nil {
		return nil, err
	}
	f, err := os.Open(filepath.Join(t.dir, filepath.FromSlash(rel)))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCacheCorrupt, err)
	}
	defer f.Close()
	mi, err := readModinfo(rel, f)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCacheCorrupt, err)
	}
	return mi, nil
}

// moduleClosure is the set of modules an image ships.
type moduleClosure struct {
	// Load is every module (path relative to /lib/modules/<release>) in
	// load order: dependencies first.
	Load []string
	// Deps maps each module to its direct dependencies.
	Deps map[string][]string
	// Before maps each module to what must be loaded before it: Deps and
	// the soft pre-dependencies (which modules.dep does not list).
	Before map[string][]string
	// Builtin lists requested modules the kernel has built in.
	Builtin []string
}

// resolve returns the dependency closure of wanted. A wanted module that is
// neither a loadable module nor built in is an error naming it, the board
// and the kernel.
func (t *moduleTree) resolve(wanted []string, boardName, kernel string) (*moduleClosure, error) {
	c := &moduleClosure{Deps: map[string][]string{}, Before: map[string][]string{}}
	const (
		visiting = 1
		done     = 2
	)
	state := map[string]int{}
	var visit func(rel string, chain []string) error
	visit = func(rel string, chain []string) error {
		switch state[rel] {
		case visiting:
			return fmt.Errorf("kernel %s: module dependency cycle: %s -> %s", kernel, strings.Join(chain, " -> "), rel)
		case done:
			return nil
		}
		state[rel] = visiting
		data, err := t.module(rel)
		if err != nil {
			return fmt.Errorf("kernel %s: %w", kernel, err)
		}
		mi, err := readModinfo(rel, bytes.NewReader(data))
		if err != nil {
			return fmt.Errorf("kernel %s: %w", kernel, err)
		}
		// Soft pre-dependencies (libcrc32c and ext4 need a crc32c
		// implementation from the crypto API) are shipped and loaded
		// first, but are not part of modules.dep, as with depmod.
		var before []string
		for _, n := range mi.softPre {
			rels, err := t.lookupSoft(n)
			if err != nil {
				return fmt.Errorf("kernel %s: %w", kernel, err)
			}
			for _, d := range rels {
				if err := visit(d, append(chain, rel)); err != nil {
					return err
				}
				before = append(before, d)
			}
		}
		var deps []string
		for _, n := range mi.depends {
			d, ok := t.byName[moduleName(n)]
			if !ok {
				return fmt.Errorf("kernel %s: module %s depends on %q: %w", kernel, rel, n, ErrNoModule)
			}
			if err := visit(d, append(chain, rel)); err != nil {
				return err
			}
			deps = append(deps, d)
		}
		c.Deps[rel] = deps
		c.Before[rel] = append(before, deps...)
		state[rel] = done
		c.Load = append(c.Load, rel)
		return nil
	}
	for _, w := range wanted {
		n := moduleName(w)
		rel, ok := t.byName[n]
		if !ok {
			if t.builtin[n] {
				c.Builtin = append(c.Builtin, w)
				continue
			}
			return nil, fmt.Errorf("board %s: module %q: %w in kernel %s (release %s): not a loadable module and not built in",
				boardName, w, ErrNoModule, kernel, t.release)
		}
		if err := visit(rel, nil); err != nil {
			return nil, fmt.Errorf("board %s: %w", boardName, err)
		}
	}
	return c, nil
}

// modulesDep renders modules.dep for the closure the way depmod writes it:
// one line per module in modules.order order ("path:" then " dep" for every
// direct and indirect dependency), dependencies listed in depmod's
// topological order, users before what they use, so that loading the list
// from its end loads dependencies first. A module without dependencies is
// "path:" with no trailing space (u-root's kmodule parser relies on it).
func (t *moduleTree) modulesDep(c *moduleClosure) []byte {
	mods := append([]string(nil), c.Load...)
	sort.SliceStable(mods, func(i, j int) bool {
		oi, iok := t.order[mods[i]]
		oj, jok := t.order[mods[j]]
		switch {
		case iok && jok:
			return oi < oj
		case iok != jok:
			return iok // listed modules first, as depmod does
		}
		return mods[i] < mods[j]
	})
	// depmod's topological sort (kmod depmod_calculate_dependencies):
	// modules no one uses are roots; pop a root, number it, release its
	// dependencies.
	users := map[string]int{}
	for _, m := range mods {
		for _, d := range c.Deps[m] {
			users[d]++
		}
	}
	var roots []string
	for _, m := range mods {
		if users[m] == 0 {
			roots = append(roots, m)
		}
	}
	idx := map[string]int{}
	for len(roots) > 0 {
		m := roots[len(roots)-1]
		roots = roots[:len(roots)-1]
		idx[m] = len(idx)
		for _, d := range c.Deps[m] {
			users[d]--
			if users[d] == 0 {
				roots = append(roots, d)
			}
		}
	}
	var b bytes.Buffer
	for _, m := range mods {
		b.WriteString(m + ":")
		all := map[string]bool{}
		var walk func(string)
		walk = func(x string) {
			for _, d := range c.Deps[x] {
				if !all[d] {
					all[d] = true
					walk(d)
				}
			}
		}
		walk(m)
		var deps []string
		for d := range all {
			deps = append(deps, d)
		}
		sort.Slice(deps, func(i, j int) bool { return idx[deps[i]] < idx[deps[j]] })
		for _, d := range deps {
			b.WriteString(" " + d)
		}
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// loadDeps is init's view of Before: for each module of Load, the indexes
// in Load of the modules to load before it (bootcfg.Config.ModuleDeps).
func (c *moduleClosure) loadDeps() [][]int {
	index := make(map[string]int, len(c.Load))
	for i, m := range c.Load {
		index[m] = i
	}
	out := make([][]int, len(c.Load))
	for i, m := range c.Load {
		seen := map[int]bool{}
		out[i] = []int{}
		for _, d := range c.Before[m] {
			if j := index[d]; !seen[j] {
				seen[j] = true
				out[i] = append(out[i], j)
			}
		}
		sort.Ints(out[i])
	}
	return out
}
