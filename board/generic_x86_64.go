package board

import "time"

func init() {
	register(&Board{
		Name: "generic-x86_64",
		Description: "x86_64 DIN-rail industrial PC or VM: UEFI-bootable GPT disk (systemd-boot), " +
			"persistent partition on the same disk, i6300esb or iTCO watchdog",
		Arch:        "amd64",
		GoArchLevel: "v1",
		Kernel:      kernelAmd64,
		// iTCO_wdt, the watchdog of Intel chipsets, is a platform driver
		// with nothing to match by itself: its device is registered by
		// lpc_ich (ICH and PCH up to the 9 series), i2c_i801 (from the
		// SMBus controller, 100 series and later) or intel_pmc_bxt (Apollo
		// Lake, a dependency of iTCO_wdt). Without them no iTCO watchdog
		// appears and init runs unarmed ("WATCHDOG NOT ARMED"); the
		// kernel cannot load them on demand (no modprobe).
		//
		// Ports: e1000e (i217/i218/i219 on the board), igb (i210/i211,
		// the usual DIN-rail ports), igc (i225/i226 2.5G), r8169
		// (Realtek, RTL8125 included). Disks: ahci (SATA, CFast), nvme,
		// and eMMC through sdhci_pci (Atom, Apollo/Elkhart Lake and
		// later) or sdhci_acpi (Bay Trail, Cherry Trail) with mmc_block:
		// without them an eMMC-only unit boots from its ESP (the
		// firmware reads it) but Linux sees no disk and /perm falls back
		// to tmpfs. USB is left out on purpose (no USB storage, network
		// adapters or keyboards: the console is serial).
		Modules: concat(nftModules, netModules, virtioModules,
			[]string{"ext4", "i6300esb", "iTCO_wdt", "lpc_ich", "i2c_i801", "button", "evdev",
				"e1000e", "igb", "igc", "r8169", "ahci", "nvme", "sd_mod",
				"sdhci_pci", "sdhci_acpi", "mmc_block"}),
		// 115200 8N1: what industrial PCs' firmware and field
		// technicians' serial adapters use.
		Console:        "ttyS0",
		ConsoleOptions: "115200n8",
		Cmdline:        []string{"console=tty0"},
		Boot:           UEFIDisk,
		NICs:           []NIC{{Name: "eth0", Role: Uplink}, {Name: "eth1", Role: Downlink}},
		Watchdog: Watchdog{
			Device: "/dev/watchdog", Module: "i6300esb", Timeout: 10 * time.Second,
			Hardware: true, QEMUDevice: "i6300esb",
		},
		// OVMF measures the boot chain into PCRs 0-7 (observed: two boots of
		// the same disk and TPM state give the same non-zero values).
		// Sealed to: 0 firmware code, 2 option ROMs and drivers, 4 the EFI
		// boot loader and the kernel it starts (it changes with every
		// image update: updates will reseal through an authorized policy,
		// see services/identity/doc.go), 7 the Secure Boot state. Not 1
		// (firmware settings: a BIOS setting or a changed boot order would
		// quarantine the gate) nor 3, 5, 6 (tables and events that carry
		// no image integrity). PCR 15 (init's boot measurement) is always
		// added by the identity service.
		TPM:  TPM{Device: "/dev/tpmrm0", QEMUDevice: "tpm-tis", PCRs: []int{0, 2, 4, 7}},
		Perm: Perm{Device: "PARTLABEL=otgate-perm", FSType: "ext4"},
		QEMU: QEMU{
			Binary: "qemu-system-x86_64", Machine: "q35", CPU: "max",
			Firmware:     "/usr/share/OVMF/OVMF_CODE.fd",
			VarsTemplate: "/usr/share/OVMF/OVMF_VARS.fd",
			NICModel:     "virtio-net-pci", DiskModel: "virtio-blk-pci", Memory: "512M", CPUs: 2,
		},
	})
}
