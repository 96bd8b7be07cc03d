package board

import "time"

func init() {
	register(&Board{
		Name:                 "qemu-x86_64",
		Description:          "x86_64 virtual machine, direct kernel boot (QEMU -kernel), i6300esb watchdog, virtio NICs and disk",
		Arch:                 "amd64",
		GoArchLevel:          "v1",
		InitramfsCompression: "none",
		// The generic kernel, not -cloud: only it has the i6300esb driver.
		Kernel: kernelAmd64,
		Modules: concat(nftModules, netModules, virtioModules,
			[]string{"ext4", "i6300esb", "button", "evdev"}),
		Console: "ttyS0",
		Boot:    DirectKernel,
		NICs:    []NIC{{Name: "eth0", Role: Uplink}, {Name: "eth1", Role: Downlink}},
		Watchdog: Watchdog{
			Device: "/dev/watchdog", Module: "i6300esb", Timeout: 10 * time.Second,
			Hardware: true, QEMUDevice: "i6300esb",
		},
		// No firmware PCRs: with direct kernel boot SeaBIOS measures only
		// separators into PCRs 0, 3, 5, 6 and 7, and into 1, 2 and 4 the VM
		// configuration (SMBIOS, the linuxboot option ROM, the boot
		// attempt), never the kernel or initramfs QEMU loads (observed
		// with two boots of the same image and TPM state: 1, 2, 4 stable,
		// the rest the bare separator). Sealing to them would protect
		// nothing of the image and would quarantine the gate after a QEMU
		// upgrade or a changed -m. The seal rests on PCR 15, init's boot
		// measurement.
		TPM:  TPM{Device: "/dev/tpmrm0", QEMUDevice: "tpm-tis"},
		Perm: Perm{Device: "/dev/vda", FSType: "ext4"},
		// q35 (PCIe, like today's industrial PCs), not pc (i440FX): on pc
		// every virtio device's legacy interrupt link is routed by ACPI
		// methods, ~115 ms each under TCG, 0.6 s of a boot's module loading.
		QEMU: QEMU{
			Binary: "qemu-system-x86_64", Machine: "q35", CPU: "max",
			NICModel: "virtio-net-pci", DiskModel: "virtio-blk-pci", Memory: "512M", CPUs: 2,
		},
	})
}
