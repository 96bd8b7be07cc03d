package board

import "time"

func init() {
	register(&Board{
		Name:                 "qemu-aarch64",
		Description:          "arm64 virtual machine (QEMU virt), direct kernel boot, virtio NICs and disk, software watchdog",
		Arch:                 "arm64",
		GoArchLevel:          "v8.0",
		InitramfsCompression: "none",
		Kernel:               kernelCloudArm64,
		// ext4 is built into the arm64 cloud kernel; tpm_tis is a module.
		Modules: concat(nftModules, netModules, virtioModules,
			[]string{"tpm_tis", "softdog", "evdev"}),
		Console: "ttyAMA0",
		Boot:    DirectKernel,
		NICs:    []NIC{{Name: "eth0", Role: Uplink}, {Name: "eth1", Role: Downlink}},
		// QEMU virt has no watchdog this kernel drives: softdog keeps PID 1
		// honest but cannot reset a wedged kernel.
		Watchdog: Watchdog{Device: "/dev/watchdog", Module: "softdog", Timeout: 10 * time.Second},
		// No firmware PCRs: QEMU virt with direct kernel boot runs no
		// measuring firmware (observed: PCRs 0-14 all zero on every boot).
		// The seal rests on PCR 15, init's boot measurement.
		TPM:  TPM{Device: "/dev/tpmrm0", QEMUDevice: "tpm-tis-device"},
		Perm: Perm{Device: "/dev/vda", FSType: "ext4"},
		QEMU: QEMU{
			Binary: "qemu-system-aarch64", Machine: "virt", CPU: "cortex-a57",
			NICModel: "virtio-net-pci", DiskModel: "virtio-blk-pci", Memory: "512M", CPUs: 2,
		},
	})
}
