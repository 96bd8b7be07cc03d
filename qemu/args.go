package qemu

import (
	"fmt"
	"os"
	"strings"

	"github.com/otgate/otgate/board"
)

// invocation is everything needed to exec QEMU for one VM.
type invocation struct {
	binary string
	args   []string
	// files become the child's descriptors 3, 4, ... (tap devices).
	files []*os.File
}

// vmPaths are the per-VM files the arguments refer to.
type vmPaths struct {
	kernel, initramfs string // DirectKernel
	vars              string // UEFIDisk: per-VM copy of the variable store
	disk              string // persistent (DirectKernel) or boot (UEFIDisk) disk, "" for none
	qmp               string // QMP unix socket
	tpm               string // swtpm control socket, "" for none
}

// buildInvocation turns a board, the options and the per-VM paths into a
// QEMU command line. It never enables KVM: on this platform only TCG works.
func buildInvocation(b *board.Board, c *config, p vmPaths, forwards []HostForward) (*invocation, error) {
	q := b.QEMU
	inv := &invocation{binary: q.Binary}
	add := func(a ...string) { inv.args = append(inv.args, a...) }

	mem := q.Memory
	if c.memory != "" {
		mem = c.memory
	}
	smp := c.smp
	if smp == 0 {
		smp = max(q.CPUs, 1)
	}
	add("-M", q.Machine, "-accel", "tcg", "-cpu", q.CPU, "-m", mem, "-smp", fmt.Sprint(smp))
	add("-nodefaults", "-no-user-config", "-display", "none")
	// The serial console is QEMU's standard output, read by the harness.
	add("-serial", "stdio")
	add("-qmp", "unix:"+p.qmp+",server=on,wait=off")
	if !c.reboot {
		add("-no-reboot")
	}

	switch b.Boot {
	case board.DirectKernel:
		cmdline := b.KernelCmdline()
		if len(c.cmdline) > 0 {
			cmdline += " " + strings.Join(c.cmdline, " ")
		}
		add("-kernel", p.kernel, "-initrd", p.initramfs, "-append", cmdline)
		if p.disk != "" {
			add("-drive", "file="+p.disk+",format=raw,if=none,id=perm,cache=unsafe",
				"-device", q.DiskModel+",drive=perm")
		}
	case board.UEFIDisk:
		if len(c.cmdline) > 0 {
			return nil, fmt.Errorf("qemu: board %s boots from a UEFI disk: its kernel command line is in the image, WithCmdline(%q) cannot change it",
				b.Name, c.cmdline)
		}
		if q.Firmware == "" || q.VarsTemplate == "" {
			return nil, fmt.Errorf("qemu: board %s boots from a UEFI disk but names no QEMU firmware/vars template", b.Name)
		}
		add("-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+q.Firmware,
			"-drive", "if=pflash,format=raw,unit=1,file="+p.vars,
			"-drive", "file="+p.disk+",format=raw,if=none,id=boot,cache=unsafe",
			"-device", q.DiskModel+",drive=boot,bootindex=0")
	default:
		return nil, fmt.Errorf("qemu: board %s: unknown boot kind %q", b.Name, b.Boot)
	}

	add("-device", "virtio-rng-pci")

	if err := addNICs(b, c, inv, forwards); err != nil {
		return nil, err
	}

	if p.tpm != "" {
		if b.TPM.QEMUDevice == "" {
			return nil, fmt.Errorf("qemu: board %s has no TPM front end (TPM.QEMUDevice) for WithTPM", b.Name)
		}
		add("-chardev", "socket,id=chrtpm,path="+p.tpm,
			"-tpmdev", "emulator,id=tpm0,chardev=chrtpm",
			"-device", b.TPM.QEMUDevice+",tpmdev=tpm0")
	}
	if c.watchdog != "" {
		if b.Watchdog.QEMUDevice == "" {
			return nil, fmt.Errorf("qemu: board %s has no emulated watchdog (its watchdog is %s via %s): WithWatchdog cannot apply",
				b.Name, b.Watchdog.Device, b.Watchdog.Module)
		}
		add("-device", b.Watchdog.QEMUDevice, "-action", "watchdog="+string(c.watchdog))
	}
	add(c.extraArgs...)
	return inv, nil
}

// addNICs adds one virtio NIC per board NIC, in board order, so the guest
// names them eth0, eth1, ... as the board says. A NIC with nothing to
// connect to gets a private hub port: it exists in the guest but carries
// nothing.
func addNICs(b *board.Board, c *config, inv *invocation, forwards []HostForward) error {
	if c.userNet && b.Interface(board.Uplink) == "" {
		return fmt.Errorf("qemu: board %s has no uplink NIC for WithUserNet", b.Name)
	}
	seen := map[board.Role]bool{}
	for i, nic := range b.NICs {
		id := fmt.Sprintf("nic%d", i)
		first := !seen[nic.Role]
		seen[nic.Role] = true
		var netdev string
		switch {
		case nic.Role == board.Uplink && first && c.userNet:
			// restrict=on: the guest reaches nothing through slirp (not
			// the host, not what the host can reach), only the forwards
			// below reach it. Test traffic stays on loopback.
			netdev = "user,id=" + id + ",restrict=on"
			for _, f := range forwards {
				netdev += fmt.Sprintf(",hostfwd=tcp:127.0.0.1:%d-:%d", f.HostPort, f.GuestPort)
			}
		case first && c.lab != nil:
			tap, err := c.lab.Tap(nic.Role)
			if err != nil {
				return fmt.Errorf("qemu: board %s NIC %s (%s): %w", b.Name, nic.Name, nic.Role, err)
			}
			inv.files = append(inv.files, tap)
			netdev = fmt.Sprintf("tap,id=%s,fd=%d", id, 2+len(inv.files))
		default:
			netdev = fmt.Sprintf("hubport,id=%s,hubid=%d", id, 100+i)
		}
		inv.args = append(inv.args, "-netdev", netdev,
			"-device", fmt.Sprintf("%s,netdev=%s,mac=52:54:00:0e:0a:%02x", b.QEMU.NICModel, id, 0x10+i))
	}
	return nil
}
