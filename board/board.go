// Package board holds one definition per hardware (or virtual hardware) target
// the appliance image is built for. A definition names everything the image
// builder, PID 1 and the QEMU harness need to know about a target: the CPU
// architecture, the exact Debian kernel package (version and sha256, so a
// build is reproducible and verifiable), the kernel modules to ship, the
// console, the roles of the network interfaces, the watchdog, the TPM and the
// persistent disk.
//
// Adding a board is adding one file with one definition that calls register.
package board

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// ErrUnknown is returned by Lookup for a board name that has no definition.
var ErrUnknown = errors.New("unknown board")

// BootKind says how firmware or the hypervisor starts the kernel.
type BootKind string

const (
	// DirectKernel: the hypervisor loads kernel and initramfs itself
	// (QEMU -kernel/-initrd). Artifacts: kernel, initramfs.
	DirectKernel BootKind = "direct-kernel"
	// UEFIDisk: a GPT disk with an EFI system partition holding a boot
	// loader, the kernel and the initramfs, plus a persistent partition.
	// Artifacts: kernel, initramfs, raw disk image, qcow2.
	UEFIDisk BootKind = "uefi-disk"
)

// Role is what a network interface is used for.
type Role string

const (
	Uplink   Role = "uplink"   // user and management side (IT)
	Downlink Role = "downlink" // OT side: PLCs, HMIs, RTUs
)

// Board is one target definition.
type Board struct {
	Name        string
	Description string
	// Arch is the GOARCH of the target: "amd64" or "arm64".
	Arch string
	// GOAMD64 or GOARM64 level, pinned for reproducible binaries.
	GoArchLevel string
	// InitramfsCompression is "zstd" (the default when empty) or "none".
	// VM boards boot uncompressed: the hypervisor reads the file from the
	// host's page cache, and decompressing 20 MiB on an emulated CPU is
	// most of a second of every boot. Boards for real hardware compress.
	InitramfsCompression string

	Kernel Kernel
	// Modules lists kernel modules (names without .ko, '-' or '_' alike) to
	// ship and load at boot, in addition to their dependency closure, which
	// the image builder resolves from each module's .modinfo.
	Modules []string
	// Console is the serial console device, e.g. "ttyS0" or "ttyAMA0".
	Console string
	// ConsoleOptions are the serial console's speed, parity and bits
	// (console=DEVICE,OPTIONS), e.g. "115200n8"; empty leaves them to
	// the kernel (9600n8 for a 8250 UART), which is right only where
	// the speed does not matter (QEMU's emulated ports).
	ConsoleOptions string
	// Cmdline holds extra kernel command-line arguments.
	Cmdline []string
	Boot    BootKind

	NICs     []NIC
	Watchdog Watchdog
	TPM      TPM
	Perm     Perm
	QEMU     QEMU
}

// Kernel pins a Debian kernel package exactly.
type Kernel struct {
	// Package is the Debian binary package name.
	Package string
	// Version is the exact Debian package version.
	Version string
	// DebArch is the Debian architecture of the package: amd64 or arm64.
	DebArch string
	// Pool is the path of the .deb below an archive root.
	Pool string
	// SHA256 of the .deb, hex.
	SHA256 string
	// Archives are archive roots tried in order to download Pool.
	Archives []string
	// Release is the kernel release (uname -r), the directory under
	// /lib/modules in the package.
	Release string
	// Image is the path of the kernel image inside the package.
	Image string
}

// URLs returns the download addresses of the kernel package, in order.
func (k Kernel) URLs() []string {
	var u []string
	for _, a := range k.Archives {
		u = append(u, strings.TrimRight(a, "/")+"/"+k.Pool)
	}
	return u
}

// FileName is the .deb file name.
func (k Kernel) FileName() string {
	return k.Pool[strings.LastIndex(k.Pool, "/")+1:]
}

// NIC names one network interface of the board and its role.
type NIC struct {
	Name string // kernel name, e.g. "eth0"; order follows the QEMU -device order
	Role Role
}

// Watchdog describes the hardware watchdog PID 1 pets.
type Watchdog struct {
	// Device is the character device, usually /dev/watchdog. Empty: none.
	Device string
	// Module that provides it (already listed in Modules).
	Module string
	// Timeout programmed into the device.
	Timeout time.Duration
	// Hardware is false for the software watchdog (softdog): it cannot
	// reset a wedged kernel, only a wedged PID 1.
	Hardware bool
	// QEMUDevice is the device QEMU emulates for it ("i6300esb"), if any.
	QEMUDevice string
}

// TPM describes how the TPM is reached.
type TPM struct {
	// Device is the resource-managed character device (/dev/tpmrm0).
	Device string
	// QEMUDevice is the QEMU front end: "tpm-tis" (x86) or
	// "tpm-tis-device" (arm64 virt).
	QEMUDevice string
	// PCRs are the PCRs (SHA-256 bank) the firmware of this board measures
	// that the identity's data key is sealed to, besides the PCR init
	// extends with the boot measurement (15). Each board file says why it
	// chose them (what its firmware measures there, and that the values
	// are stable from boot to boot). Empty: only the boot measurement.
	PCRs []int
	// None: this board has no TPM; the gate runs in dev mode: software
	// key, every certificate and audit record marked; never for
	// production. The image builder passes -dev to the identity service
	// (image/bootconfig.go), which otherwise refuses to start without a
	// TPM. A board with None sets no Device, QEMUDevice or PCRs
	// (Validate). No board defined here sets it.
	None bool
}

// Perm names the persistent disk mounted at /perm.
type Perm struct {
	// Device is a block device path ("/dev/vda") or "PARTLABEL=<label>"
	// for a GPT partition found by its name.
	Device string
	// FSType is the file system init formats it with on first boot.
	FSType string
}

// QEMU holds what the harness needs to boot this board under emulation.
type QEMU struct {
	Binary  string // qemu-system-x86_64 / qemu-system-aarch64
	Machine string // -M
	CPU     string // -cpu
	// Firmware is the UEFI code image for UEFIDisk boards (read-only pflash),
	// VarsTemplate the variable store copied per boot.
	Firmware     string
	VarsTemplate string
	NICModel     string // virtio-net-pci
	DiskModel    string // virtio-blk-pci
	Memory       string // -m
	// CPUs is the number of virtual CPUs (-smp; 0 means 1). Two, like the
	// smallest DIN-rail industrial PCs: under TCG each vCPU is its own
	// host thread (multi-threaded TCG), and init loads modules and hashes
	// the boot measurement side by side when it has more than one CPU.
	CPUs int
}

var boards = map[string]*Board{}

func register(b *Board) {
	if _, dup := boards[b.Name]; dup {
		panic("board: duplicate definition " + b.Name)
	}
	if err := b.Validate(); err != nil {
		panic(err.Error())
	}
	boards[b.Name] = b
}

// Lookup returns the board called name.
func Lookup(name string) (*Board, error) {
	b, ok := boards[name]
	if !ok {
		return nil, fmt.Errorf("%w %q (known: %s)", ErrUnknown, name, strings.Join(Names(), ", "))
	}
	if err := b.Validate(); err != nil {
		return nil, err // a definition changed after register
	}
	return b, nil
}

// Names lists the defined boards, sorted.
func Names() []string {
	var n []string
	for k := range boards {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}

// Interface returns the first NIC with the given role, or "".
func (b *Board) Interface(r Role) string {
	for _, n := range b.NICs {
		if n.Role == r {
			return n.Name
		}
	}
	return ""
}

// KernelCmdline is the full kernel command line for this board.
//
// A wedged kernel reboots the gate: panic=-1 restarts at once after a
// panic, and softlockup_panic=1 makes a CPU stuck in the kernel (no
// scheduling for 2 x watchdog_thresh, 20 s) a panic. The gate comes back
// deny by default with its services, instead of staying up half-working
// with its watchdog still fed by PID 1 on another CPU; and the panic
// prints the stuck CPU's stack on the console whatever the loglevel,
// where a plain soft lockup report at loglevel=3 shows only its first
// line.
//
// IPv6 is off on every interface from the start (ipv6.disable_ipv6=1;
// the stack stays built in, so AF_INET6 sockets still open): the gate is
// IPv4 on both sides, and the segment drops IPv6 anyway. An interface
// with IPv6 on sends MLD reports, router solicitations and DAD probes of
// its own; under QEMU's TCG the MLD worker was caught spinning in
// virtio_net's transmit path while the interfaces went down at power-off
// (a soft lockup, about once in 230 boots). With IPv6 off ip6_output
// drops before the driver is reached.
func (b *Board) KernelCmdline() string {
	args := append([]string{"rdinit=/init", "panic=-1", "softlockup_panic=1", "ipv6.disable_ipv6=1", "quiet", "loglevel=3"}, b.Cmdline...)
	// The serial console comes last: the last console= becomes
	// /dev/console, where PID 1 writes its log.
	console := "console=" + b.Console
	if b.ConsoleOptions != "" {
		console += "," + b.ConsoleOptions
	}
	args = append(args, console)
	return strings.Join(args, " ")
}
