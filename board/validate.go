package board

import (
	"errors"
	"fmt"
	"net/url"
	"path"
	"regexp"
	"strings"
)

// ErrInvalid is wrapped by Validate's errors.
var ErrInvalid = errors.New("invalid board definition")

var (
	boardName   = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)
	moduleToken = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
	hexSHA256   = regexp.MustCompile(`^[0-9a-f]{64}$`)
	// The kernel's serial console options: baud, then parity (n, o or
	// e), data bits and flow control (r), each optional after the baud.
	consoleOptionsRE = regexp.MustCompile(`^[1-9][0-9]*([noe]([5-8]r?)?)?$`)
	// GOAMD64 and GOARM64 levels the go command accepts.
	goArchLevels = map[string]*regexp.Regexp{
		"amd64": regexp.MustCompile(`^v[1-4]$`),
		"arm64": regexp.MustCompile(`^v(8\.[0-9]|9\.[0-5])(,(lse|crypto))*$`),
	}
)

// Validate checks a definition before anything is fetched or built, and
// names the board and every field that is wrong: the name (a directory
// name), the architecture and its pinned level, the kernel package (and
// systemd-boot's for a UEFI board: name, version, a clean pool path, a
// sha256 of 64 lowercase hex digits, http(s) archives, the Debian
// architecture of the board), the modules (names, listed once, '-' and
// '_' alike), the console, the boot kind, the NICs (unique names, known
// roles, one uplink, at least one downlink), the watchdog (its module
// listed), the TPM, the persistent disk and the QEMU settings.
//
// A board without a TPM (TPM.None, dev mode) names no TPM device, QEMU
// TPM front end or PCRs.
//
// register panics on a definition that fails it; the image builder and
// the QEMU harness get boards from Lookup, which checks again, and the
// builder checks a board handed to it directly.
func (b *Board) Validate() error {
	var bad []string
	add := func(format string, args ...any) {
		bad = append(bad, fmt.Sprintf("board %s: ", b.Name)+fmt.Sprintf(format, args...))
	}
	if !boardName.MatchString(b.Name) {
		add("Name %q: want lowercase letters, digits, '-' and '_' (it names out/<board>/)", b.Name)
	}
	if re, ok := goArchLevels[b.Arch]; !ok {
		add("Arch %q: want amd64 or arm64", b.Arch)
	} else if !re.MatchString(b.GoArchLevel) {
		add("GoArchLevel %q: not a GO%s level (pin it for reproducible binaries)", b.GoArchLevel, strings.ToUpper(b.Arch))
	}
	switch b.InitramfsCompression {
	case "", "zstd", "none":
	default:
		add("InitramfsCompression %q: want zstd or none", b.InitramfsCompression)
	}
	for _, p := range b.Kernel.problems(b.Arch, true) {
		add("Kernel.%s", p)
	}
	if b.Boot == UEFIDisk {
		for _, p := range SystemdBoot.problems(b.Arch, false) {
			add("systemd-boot (board.SystemdBoot) %s", p)
		}
	}
	seen := map[string]string{}
	for i, m := range b.Modules {
		if !moduleToken.MatchString(m) || strings.HasSuffix(m, ".ko") {
			add("Modules[%d] %q: not a module name (letters, digits, '-', '_'; no .ko)", i, m)
			continue
		}
		n := strings.ReplaceAll(m, "-", "_")
		if prev, dup := seen[n]; dup {
			add("Modules[%d] %q: listed twice (as %q before; '-' and '_' are the same)", i, m, prev)
		}
		seen[n] = m
	}
	if b.Console == "" || strings.ContainsAny(b.Console, " /") {
		add("Console %q: want a device name such as ttyS0", b.Console)
	}
	if b.ConsoleOptions != "" && !consoleOptionsRE.MatchString(b.ConsoleOptions) {
		add("ConsoleOptions %q: want speed[parity[bits]] such as 115200n8", b.ConsoleOptions)
	}
	switch b.Boot {
	case DirectKernel, UEFIDisk:
	default:
		add("Boot %q: want %q or %q", b.Boot, DirectKernel, UEFIDisk)
	}
	nics := map[string]bool{}
	uplinks, downlinks := 0, 0
	for i, n := range b.NICs {
		if n.Name == "" || strings.ContainsAny(n.Name, " /") || len(n.Name) > 15 {
			add("NICs[%d] name %q: not an interface name", i, n.Name)
		} else if nics[n.Name] {
			add("NICs[%d] %q: named twice", i, n.Name)
		}
		nics[n.Name] = true
		switch n.Role {
		case Uplink:
			uplinks++
		case Downlink:
			downlinks++
		default:
			add("NICs[%d] %q: unknown role %q (want %q or %q)", i, n.Name, n.Role, Uplink, Downlink)
		}
	}
	if uplinks != 1 {
		add("%d NICs with role %q, want exactly one", uplinks, Uplink)
	}
	if downlinks == 0 {
		add("no NIC with role %q", Downlink)
	}
	if w := b.Watchdog; w.Device != "" {
		if w.Timeout <= 0 {
			add("Watchdog.Timeout %v: want a positive timeout for %s", w.Timeout, w.Device)
		}
		if _, ok := seen[strings.ReplaceAll(w.Module, "-", "_")]; w.Module != "" && !ok {
			add("Watchdog.Module %q is not in Modules", w.Module)
		}
	}
	pcrs := map[int]bool{}
	for _, p := range b.TPM.PCRs {
		if p < 0 || p > 23 || pcrs[p] {
			add("TPM.PCRs %v: want distinct PCRs 0-23", b.TPM.PCRs)
			break
		}
		pcrs[p] = true
	}
	if b.TPM.None {
		for _, f := range []struct {
			field string
			set   bool
			value any
		}{
			{"TPM.Device", b.TPM.Device != "", b.TPM.Device},
			{"TPM.QEMUDevice", b.TPM.QEMUDevice != "", b.TPM.QEMUDevice},
			{"TPM.PCRs", len(b.TPM.PCRs) > 0, b.TPM.PCRs},
		} {
			if f.set {
				add("TPM.None (no TPM: dev mode, software key) conflicts with %s %v: a board with a TPM must not run in dev mode; remove one of them",
					f.field, f.value)
			}
		}
	} else if b.TPM.Device == "" {
		add("no TPM.Device: name the TPM, or set TPM.None (dev mode, never for production)")
	}
	if b.Perm.Device == "" || b.Perm.FSType == "" {
		add("Perm %+v: want a device and a file system type", b.Perm)
	}
	if b.QEMU.CPUs < 0 {
		add("QEMU.CPUs %d: want 0 or more", b.QEMU.CPUs)
	}
	if len(bad) > 0 {
		return fmt.Errorf("%w: %s", ErrInvalid, strings.Join(bad, "; "))
	}
	return nil
}

// problems lists what is wrong with a pinned package (kernel: Release
// must be set too) for a board of GOARCH arch.
func (k Kernel) problems(arch string, kernel bool) []string {
	var bad []string
	add := func(format string, args ...any) { bad = append(bad, fmt.Sprintf(format, args...)) }
	if k.Package == "" || strings.ContainsAny(k.Package, " /") {
		add("Package %q: want a Debian package name", k.Package)
	}
	if k.Version == "" || strings.ContainsAny(k.Version, " /") {
		add("Version %q: want the exact Debian version", k.Version)
	}
	if arch != "" && k.DebArch != arch {
		add("DebArch %q: the board is %s", k.DebArch, arch)
	}
	if k.Pool == "" || path.IsAbs(k.Pool) || path.Clean(k.Pool) != k.Pool || strings.HasPrefix(k.Pool, "../") || !strings.HasSuffix(k.Pool, ".deb") {
		add("Pool %q: want a clean relative path of a .deb below the archive root", k.Pool)
	}
	if !hexSHA256.MatchString(k.SHA256) {
		add("SHA256 %q: want 64 lowercase hex digits (%d characters given)", k.SHA256, len(k.SHA256))
	}
	if len(k.Archives) == 0 {
		add("Archives: none, the package cannot be downloaded")
	}
	for i, a := range k.Archives {
		u, err := url.Parse(a)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			add("Archives[%d] %q: want an http or https URL (the sha256 pin, not the transport, vouches for the bytes)", i, a)
		}
	}
	if kernel && (k.Release == "" || strings.Contains(k.Release, "/")) {
		add("Release %q: want the kernel release (uname -r)", k.Release)
	}
	if k.Image == "" || path.IsAbs(k.Image) || path.Clean(k.Image) != k.Image || strings.HasPrefix(k.Image, "../") {
		add("Image %q: want a clean relative path inside the package", k.Image)
	}
	return bad
}
