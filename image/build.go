package image

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/otgate/otgate/board"
	"github.com/otgate/otgate/internal/bootcfg"
	"golang.org/x/sys/unix"
)

// Fixed binaries of every image.
const (
	initBinary   = "/init"
	otgateBinary = "/bin/otgate"
	otgatePkg    = "./cmd/otgate"
	builderPkg   = "./image/cmd/otgate-image"
	rootfsDir    = "rootfs"
)

// binary is one Go main package built into the image.
type binary struct {
	path string // in the image
	pkg  string // relative to the source root
}

// plan lists the binaries of the image and checks the service table
// against what the image will hold, before anything is built or written:
// a cycle, an unknown dependency or a binary nothing provides is an error.
func plan(b *board.Board, c *config) ([]binary, []string, error) {
	if err := b.Validate(); err != nil {
		return nil, nil, err
	}
	bins := []binary{{initBinary, c.initPkg}, {otgateBinary, otgatePkg}}
	byPath := map[string]string{initBinary: c.initPkg, otgateBinary: otgatePkg}
	var links []string
	for _, r := range c.services {
		if r.MultiCall {
			if r.Package != "" {
				return nil, nil, fmt.Errorf("board %s: service %q: a multi-call service (a link to %s) names no package, not %s",
					b.Name, r.Service.Name, otgateBinary, r.Package)
			}
			if p, ok := byPath[r.Service.Binary]; ok && p != otgatePkg {
				return nil, nil, fmt.Errorf("board %s: service %q: binary %s is a link to %s, but another row builds it from %s",
					b.Name, r.Service.Name, r.Service.Binary, otgateBinary, p)
			}
			if _, ok := byPath[r.Service.Binary]; !ok {
				byPath[r.Service.Binary] = otgatePkg
				links = append(links, r.Service.Binary)
			}
			continue
		}
		if r.Package == "" {
			continue // provided by another binary or by rootfs/
		}
		if p, ok := byPath[r.Service.Binary]; ok {
			if p != r.Package {
				return nil, nil, fmt.Errorf("board %s: service %q: binary %s built from %s, but another row builds it from %s",
					b.Name, r.Service.Name, r.Service.Binary, r.Package, p)
			}
			continue
		}
		byPath[r.Service.Binary] = r.Package
		bins = append(bins, binary{r.Service.Binary, r.Package})
	}
	planned := func(p string) bool {
		if _, ok := byPath[p]; ok {
			return true
		}
		if c.debug && (p == debugBusybox || isDebugCommand(p)) {
			return true
		}
		st, err := os.Stat(filepath.Join(c.sourceDir, rootfsDir, filepath.FromSlash(p)))
		return err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0
	}
	cfg := bootConfig(b, nil, nil, c.services, c.debug, c.test)
	if err := cfg.Validate(planned); err != nil {
		return nil, nil, fmt.Errorf("board %s: service table: %w", b.Name, err)
	}
	return bins, links, nil
}

func isDebugCommand(p string) bool {
	for _, c := range DebugCommands {
		if p == "/bin/"+c {
			return true
		}
	}
	return false
}

func build(ctx context.Context, b *board.Board, c *config) (m *Manifest, err error) {
	p := newProgress(c.log)
	defer func() {
		if err != nil {
			p.step("failed", "%v", err)
		}
	}()
	bins, links, err := plan(b, c)
	if err != nil {
		return nil, err
	}
	compress, err := compression(b)
	if err != nil {
		return nil, err
	}
	env, err := goEnv(b)
	if err != nil {
		return nil, err
	}
	if prog := os.Getenv("GOCACHEPROG"); prog != "" {
		p.step("go", "GOCACHEPROG=%s ignored: the image's binaries are built with the go command's own cache, not a cache program (it could serve any bytes as a build output); this builder itself may have been built through it (go run)", prog)
	}
	// The go command trusts its cache's outputs: one that another user
	// may write is refused before anything is built or written.
	gocache, err := goCacheDir(ctx, c.sourceDir, env)
	if err != nil {
		return nil, err
	}
	if err := checkGoCache(gocache); err != nil {
		return nil, err
	}
	if b.Kernel.Release == "" || b.Kernel.Image == "" {
		return nil, fmt.Errorf("board %s: kernel package %s: Release and Image must be set", b.Name, b.Kernel.Package)
	}
	work, err := os.MkdirTemp("", "otgate-image-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)

	m = &Manifest{Board: b.Name, Variant: variant(c), Debug: c.debug, Test: c.test}
	m.Inputs.GOARCH, m.Inputs.GoArchLevel = b.Arch, b.GoArchLevel

	// 1. Kernel and 2. modules, read from the verified unpack (a damaged
	// one is unpacked again, once).
	var (
		kernel  []byte
		closure *moduleClosure
		modules []*entry
		modDep  []byte
		builtin []byte
	)
	modRoot := path.Join("/lib/modules", b.Kernel.Release)
	err = withUnpacked(ctx, "board "+b.Name+": kernel", b.Kernel, c.cacheDir, p, []string{"boot/", "lib/modules/", "usr/lib/modules/"}, func(u *unpacked) error {
		var err error
		kernel, err = u.readFile(b.Kernel.Image)
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("board %s: kernel image %s not in package %s: %w", b.Name, b.Kernel.Image, b.Kernel.Package, err)
		}
		if err != nil {
			return fmt.Errorf("board %s: kernel: %w", b.Name, err)
		}
		mt, err := openModuleTree(u, b.Kernel.Release)
		if err != nil {
			return fmt.Errorf("board %s: kernel %s: %w", b.Name, b.Kernel.Package, err)
		}
		if closure, err = mt.resolve(b.Modules, b.Name, b.Kernel.Package+" "+b.Kernel.Version); err != nil {
			return err
		}
		modules = modules[:0]
		for _, rel := range closure.Load {
			data, err := mt.module(rel)
			if err != nil {
				return fmt.Errorf("board %s: kernel %s: %w", b.Name, b.Kernel.Package, err)
			}
			modules = append(modules, &entry{kind: kindFile, perm: 0o644, data: data, from: b.Kernel.Package + " " + rel})
		}
		modDep = mt.modulesDep(closure)
		builtin, err = mt.readFile("modules.builtin")
		if errors.Is(err, fs.ErrNotExist) {
			builtin, err = nil, nil
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	m.Inputs.Kernel = Package{Name: b.Kernel.Package, Version: b.Kernel.Version, SHA256: b.Kernel.SHA256}
	p.step("kernel", "%s %s verified", b.Kernel.Package, b.Kernel.Version)

	tree := newFileTree()
	for i, rel := range closure.Load {
		if err := tree.add(path.Join(modRoot, rel), modules[i]); err != nil {
			return nil, err
		}
	}
	if err := tree.addData(path.Join(modRoot, "modules.dep"), 0o644, modDep, "builder"); err != nil {
		return nil, err
	}
	if builtin != nil {
		if err := tree.addData(path.Join(modRoot, "modules.builtin"), 0o644, builtin, "kernel package"); err != nil {
			return nil, err
		}
	}
	m.Inputs.KernelModules, m.Inputs.BuiltinModules = closure.Load, closure.Builtin
	p.step("modules", "%d modules for %d requested (%d built in)", len(closure.Load), len(b.Modules), len(closure.Builtin))

	// 3. Go binaries.
	var pkgs []string
	for _, bin := range bins {
		out := filepath.Join(work, "bin", strings.ReplaceAll(strings.TrimPrefix(bin.path, "/"), "/", "_"))
		if err := goBuild(ctx, c.sourceDir, env, bin.pkg, out); err != nil {
			return nil, fmt.Errorf("board %s: build %s from %s: %w", b.Name, bin.path, bin.pkg, err)
		}
		if err := tree.addFile(bin.path, 0o755, out); err != nil {
			return nil, err
		}
		pkgs = append(pkgs, bin.pkg)
	}
	for _, l := range links {
		if err := tree.add(l, &entry{kind: kindSymlink, perm: 0o777, data: []byte(otgateLinkTarget(l)), from: "multi-call " + otgatePkg}); err != nil {
			return nil, err
		}
	}
	goVersion, err := goOutput(ctx, c.sourceDir, env, "env", "GOVERSION")
	if err != nil {
		return nil, err
	}
	m.Inputs.GoVersion = strings.TrimSpace(string(goVersion))
	srcFiles, mods, err := goInputs(ctx, c.sourceDir, c.sourceDir, env, filepath.Join(c.sourceDir, "go.sum"), pkgs)
	if err != nil {
		return nil, fmt.Errorf("board %s: list inputs: %w", b.Name, err)
	}
	srcFiles = append(srcFiles, "go.mod", "go.sum")
	// The builder's own code (board definitions, the cpio, zstd and disk
	// writers) makes the bytes too: record its sources and modules.
	host, err := hostGoEnv()
	if err != nil {
		return nil, err
	}
	bfiles, bmods, err := goInputs(ctx, c.sourceDir, c.sourceDir, host, filepath.Join(c.sourceDir, "go.sum"), []string{builderPkg})
	if err != nil {
		return nil, fmt.Errorf("board %s: list builder inputs: %w", b.Name, err)
	}
	srcFiles = append(srcFiles, bfiles...)
	m.Inputs.BuilderModules = sortModules(bmods)
	if m.Inputs.Builder, err = runningBuilder(); err != nil {
		return nil, fmt.Errorf("board %s: %w", b.Name, err)
	}
	p.step("go", "%d binaries built with %s GOARCH=%s level %s, %d services linked to %s", len(bins), m.Inputs.GoVersion, b.Arch, b.GoArchLevel, len(links), otgateBinary)

	// 4. Debug shell.
	if c.debug {
		bb := filepath.Join(work, "bb")
		if err := buildDebugShell(ctx, c.sourceDir, work, env, bb); err != nil {
			return nil, fmt.Errorf("board %s: %w", b.Name, err)
		}
		if err := tree.addFile(debugBusybox, 0o755, bb); err != nil {
			return nil, err
		}
		for _, cmd := range DebugCommands {
			if err := tree.add("/bin/"+cmd, &entry{kind: kindSymlink, perm: 0o777, data: []byte("bb"), from: "debug shell"}); err != nil {
				return nil, err
			}
		}
		dir := filepath.Join(c.sourceDir, debugShellDir)
		dfiles, dmods, err := goInputs(ctx, dir, c.sourceDir, env, filepath.Join(dir, "go.sum"), debugCommandPackages())
		if err != nil {
			return nil, fmt.Errorf("board %s: list debug shell inputs: %w", b.Name, err)
		}
		srcFiles = append(append(srcFiles, dfiles...), debugShellDir+"/go.mod", debugShellDir+"/go.sum", debugShellDir+"/tools.go")
		mods = append(mods, dmods...)
		p.step("debug", "u-root shell and %d core commands in %s", len(DebugCommands), debugBusybox)
	}
	m.Inputs.Modules = sortModules(mods)

	// 5. rootfs/ and the fixed nodes.
	rootfs := filepath.Join(c.sourceDir, rootfsDir)
	if err := tree.addDir("/", rootfs); err != nil {
		return nil, fmt.Errorf("board %s: %s: %w", b.Name, rootfs, err)
	}
	if err := filepath.WalkDir(rootfs, func(q string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(c.sourceDir, q)
			srcFiles = append(srcFiles, filepath.ToSlash(rel))
		}
		return err
	}); err != nil {
		return nil, err
	}
	for _, d := range []string{"/dev", "/proc", "/sys", "/run", "/tmp", "/perm", "/etc/otgate"} {
		if err := tree.add(d, &entry{kind: kindDir, perm: 0o755, from: "builder"}); err != nil {
			return nil, err
		}
	}
	// The kernel opens /dev/console for PID 1 before devtmpfs is mounted.
	if err := tree.add("/dev/console", &entry{kind: kindCharDev, perm: 0o600, major: 5, minor: 1, from: "builder"}); err != nil {
		return nil, err
	}
	if _, err := addDefaultPolicy(tree, c.sourceDir, time.Now()); err != nil {
		return nil, fmt.Errorf("board %s: %w", b.Name, err)
	}
	if c.test {
		if err := addTestPolicy(tree); err != nil {
			return nil, fmt.Errorf("board %s: %w", b.Name, err)
		}
		srcFiles = append(srcFiles, testSiteSource)
	}
	var demo *DemoCredentials
	if c.demo {
		if demo, err = addDemo(tree, time.Now()); err != nil {
			return nil, fmt.Errorf("board %s: %w", b.Name, err)
		}
		srcFiles = append(srcFiles, demoSiteSource)
		m.Demo = true
	}
	if m.Inputs.Sources, err = hashSources(c.sourceDir, srcFiles); err != nil {
		return nil, err
	}
	p.step("rootfs", "%d files from %s/", countFiles(rootfs), rootfsDir)

	// 6. boot.cbor, with the image ID over every input.
	cfg := bootConfig(b, closure.Load, closure.loadDeps(), c.services, c.debug, c.test)
	if err := cfg.Validate(tree.exists); err != nil {
		return nil, fmt.Errorf("board %s: service table: %w", b.Name, err)
	}
	unsigned, err := bootcfg.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	fmt.Fprintf(h, "otgate image\nkernel %s\ninitramfs %s\n", b.Kernel.SHA256, compress)
	if b.Boot == board.UEFIDisk {
		fmt.Fprintf(h, "systemd-boot %s\ncmdline %s\n", board.SystemdBoot.SHA256, b.KernelCmdline())
	}
	h.Write(unsigned)
	tree.listing(h, bootcfg.Path)
	cfg.ImageID = hex.EncodeToString(h.Sum(nil))
	m.ImageID = cfg.ImageID
	bootCBOR, err := bootcfg.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	if _, err := bootcfg.Unmarshal(bootCBOR); err != nil {
		return nil, fmt.Errorf("board %s: boot config does not decode: %w", b.Name, err)
	}
	if err := tree.addData(bootcfg.Path, 0o644, bootCBOR, "builder"); err != nil {
		return nil, err
	}
	p.step("bootcfg", "%d services, image %s", len(cfg.Services), cfg.ImageID[:12])

	// 7. Artifacts, in a temporary directory next to the final one.
	if err := os.MkdirAll(c.outDir, 0o755); err != nil {
		return nil, err
	}
	final := c.imageDir(b)
	tmp, err := os.MkdirTemp(c.outDir, filepath.Base(final)+".tmp-")
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	if err := os.Chmod(tmp, 0o755); err != nil { // MkdirTemp makes it 0700
		return nil, err
	}
	if err := writeFileSync(filepath.Join(tmp, KernelFile), kernel); err != nil {
		return nil, err
	}
	var initrd bytes.Buffer
	if err := writeInitramfs(&initrd, tree, compress); err != nil {
		return nil, err
	}
	if err := writeFileSync(filepath.Join(tmp, InitramfsFile), initrd.Bytes()); err != nil {
		return nil, err
	}
	p.step("initramfs", "%d entries, %.1f MiB -> %.1f MiB (%s); kernel %.1f MiB",
		len(tree.entries), float64(tree.size())/mib, float64(initrd.Len())/mib, compress, float64(len(kernel))/mib)

	if demo != nil {
		if err := writeDemoCredentials(tmp, demo); err != nil {
			return nil, err
		}
	}

	// 8. UEFI disk.
	if b.Boot == board.UEFIDisk {
		if err := buildDisk(ctx, b, c, tmp, kernel, initrd.Bytes(), m, p); err != nil {
			return nil, err
		}
	}

	// 9. Manifest.
	if err := m.addArtifacts(tmp); err != nil {
		return nil, err
	}
	mb, err := m.marshal()
	if err != nil {
		return nil, err
	}
	if err := writeFileSync(filepath.Join(tmp, ManifestFile), mb); err != nil {
		return nil, err
	}
	if err := syncDir(tmp); err != nil {
		return nil, err
	}

	// 10. Replace out/<board> (out/<board>-<variant>) in one step.
	if err := replaceDir(tmp, final); err != nil {
		return nil, fmt.Errorf("board %s: install %s: %w", b.Name, final, err)
	}
	p.step("done", "%s (image %s)", final, m.ImageID[:12])
	return m, nil
}

// buildDisk writes the raw GPT disk and its qcow2 into dir.
func buildDisk(ctx context.Context, b *board.Board, c *config, dir string, kernel, initrd []byte, m *Manifest, p *progress) error {
	sb := board.SystemdBoot
	var efi []byte
	err := withUnpacked(ctx, "", sb, c.cacheDir, p, []string{"usr/lib/systemd/boot/efi/"}, func(u *unpacked) error {
		var err error
		efi, err = u.readFile(sb.Image)
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%s not in package %s: %w", sb.Image, sb.Package, err)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("board %s: systemd-boot: %w", b.Name, err)
	}
	m.Inputs.SystemdBoot = &Package{Name: sb.Package, Version: sb.Version, SHA256: sb.SHA256}
	files := []espFile{
		{"/EFI/BOOT/BOOTX64.EFI", efi},
		{"/EFI/systemd/systemd-bootx64.efi", efi},
		{"/loader/loader.conf", []byte("timeout 0\ndefault otgate.conf\neditor no\n")},
		{"/loader/entries/otgate.conf", loaderEntry(b, m.Variant)},
		{"/otgate/kernel", kernel},
		{"/otgate/initramfs", initrd},
	}
	raw := filepath.Join(dir, DiskFile)
	if err := writeDisk(ctx, raw, b.Name, files); err != nil {
		return fmt.Errorf("board %s: %w", b.Name, err)
	}
	if m.Inputs.QemuImg, err = writeQCOW2(ctx, raw, filepath.Join(dir, QCOW2File)); err != nil {
		return fmt.Errorf("board %s: %w", b.Name, err)
	}
	p.step("disk", "GPT disk %d MiB (ESP %d MiB, %s %d MiB), qcow2, systemd-boot %s",
		diskSize/mib, espSize/mib, PermPartitionName, permSize/mib, sb.Version)
	return nil
}

// loaderEntry is systemd-boot's entry for the image: its title names a
// variant that is not production ("otgate DEBUG image, not for
// production"), so the boot menu and a look at the ESP say so too.
func loaderEntry(b *board.Board, variant string) []byte {
	title := "otgate"
	if variant != Production {
		title += " " + strings.ToUpper(variant) + " image, not for production"
	}
	return []byte("title " + title + "\nlinux /otgate/kernel\ninitrd /otgate/initramfs\noptions " + b.KernelCmdline() + "\n")
}

// addArtifacts records every file of dir (but the manifest) in m.
func (m *Manifest) addArtifacts(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if e.Name() == ManifestFile {
			continue
		}
		q := filepath.Join(dir, e.Name())
		st, err := os.Stat(q)
		if err != nil {
			return err
		}
		sum, err := fileSHA256(q)
		if err != nil {
			return err
		}
		m.Artifacts = append(m.Artifacts, Artifact{Name: e.Name(), Size: st.Size(), SHA256: sum})
	}
	sort.Slice(m.Artifacts, func(i, j int) bool { return m.Artifacts[i].Name < m.Artifacts[j].Name })
	return nil
}

// hashSources hashes the source files (relative paths), sorted, unique.
func hashSources(root string, files []string) ([]SourceFile, error) {
	sort.Strings(files)
	var out []SourceFile
	for i, f := range files {
		if i > 0 && f == files[i-1] {
			continue
		}
		sum, err := fileSHA256(filepath.Join(root, filepath.FromSlash(f)))
		if err != nil {
			return nil, fmt.Errorf("source file %s: %w", f, err)
		}
		out = append(out, SourceFile{Path: f, SHA256: sum})
	}
	return out, nil
}

func countFiles(dir string) int {
	n := 0
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			n++
		}
		return nil
	})
	return n
}

// replaceDir moves the complete directory tmp to final in one step: a
// rename when final does not exist, else an atomic exchange
// (renameat2 RENAME_EXCHANGE) followed by removing the old image.
// Readers see the old image or the new one, never a mix or nothing. When
// another build of the board installs its image between the two tries
// (final appeared), the exchange is tried again: builds that finish
// together each install a whole image, the last one stays.
func replaceDir(tmp, final string) error {
	for try := 0; ; try++ {
		err := unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, final, unix.RENAME_EXCHANGE)
		if err == nil {
			if err := os.RemoveAll(tmp); err != nil { // tmp now holds the old image
				return fmt.Errorf("remove previous image: %w", err)
			}
			return syncDir(filepath.Dir(final))
		}
		if !errors.Is(err, unix.ENOENT) {
			return err
		}
		err = os.Rename(tmp, final)
		if err == nil {
			return syncDir(filepath.Dir(final))
		}
		if try == 100 || !errors.Is(err, unix.ENOTEMPTY) && !errors.Is(err, unix.EEXIST) {
			return err
		}
	}
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// writeFileSync writes an artifact and flushes it to disk.
func writeFileSync(name string, data []byte) error {
	f, err := os.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// otgateLinkTarget is the target of a multi-call service's link: relative
// when the link sits next to /bin/otgate, so that the image reads the same
// when mounted elsewhere.
func otgateLinkTarget(link string) string {
	if path.Dir(link) == path.Dir(otgateBinary) {
		return path.Base(otgateBinary)
	}
	return otgateBinary
}
