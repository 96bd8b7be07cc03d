package board

// Debian archive roots. The security archive carries the current kernel ABI;
// the main archive carries point-release kernels and systemd-boot.
var debianArchives = []string{
	"http://deb.debian.org/debian-security",
	"http://deb.debian.org/debian",
}

// SystemdBoot pins the systemd-boot EFI package used by UEFIDisk boards.
var SystemdBoot = Kernel{
	Package:  "systemd-boot-efi",
	Version:  "252.39-1~deb12u2",
	DebArch:  "amd64",
	Pool:     "pool/main/s/systemd/systemd-boot-efi_252.39-1~deb12u2_amd64.deb",
	SHA256:   "8f2b81bdcfafc466882a0cae460272dbf10d8d97c6a3c1c6ea33038c155a2f5e",
	Archives: []string{"http://deb.debian.org/debian"},
	Image:    "usr/lib/systemd/boot/efi/systemd-bootx64.efi",
}

var kernelAmd64 = Kernel{
	Package:  "linux-image-6.1.0-56-amd64",
	Version:  "6.1.192-2",
	DebArch:  "amd64",
	Pool:     "pool/updates/main/l/linux-signed-amd64/linux-image-6.1.0-56-amd64_6.1.192-2_amd64.deb",
	SHA256:   "a86e2049672f52354c4536a089203b6c82639420424d31c91cf31a181fd4d8f1",
	Archives: debianArchives,
	Release:  "6.1.0-56-amd64",
	Image:    "boot/vmlinuz-6.1.0-56-amd64",
}

var kernelCloudArm64 = Kernel{
	Package:  "linux-image-6.1.0-56-cloud-arm64",
	Version:  "6.1.192-2",
	DebArch:  "arm64",
	Pool:     "pool/updates/main/l/linux-signed-arm64/linux-image-6.1.0-56-cloud-arm64_6.1.192-2_arm64.deb",
	SHA256:   "481ab54a27246579aadeb372315c56de02f2fe0cba4e09b387946269fff2f415",
	Archives: debianArchives,
	Release:  "6.1.0-56-cloud-arm64",
	Image:    "boot/vmlinuz-6.1.0-56-cloud-arm64",
}

// Modules every board needs: the nftables core for the baseline ruleset
// (installed before any interface is up), conntrack for established/related,
// VLANs and the dummy overlay interface, virtio devices.
var (
	// Exactly the expressions the baseline and segment rulesets use
	// (services/segment/ruleset): ct (nft_ct, with conntrack and
	// defrag), limit, and log to an NFLOG group (nft_log with
	// nfnetlink_log; no syslog logger). No reject, fib or socket
	// expression is used, so their modules (12 with dependencies) are not
	// loaded: kernel code the gate does not run is attack surface, and
	// each load costs boot time under TCG (init logs the module stage's
	// time: "init: loaded N of N modules (...s)"). A ruleset that uses another
	// expression fails to apply on the appliance (the QEMU tests apply
	// the real ones) until its module is added here.
	nftModules = []string{
		"nfnetlink", "nf_tables", "nf_conntrack", "nft_ct", "nf_defrag_ipv4",
		"nf_defrag_ipv6", "nft_log", "nft_limit", "nfnetlink_log",
	}
	// No xfrm_user: overlay and netconf open their netlink handles for
	// NETLINK_ROUTE only (a handle with no families named would open an
	// XFRM socket too and fail without that module).
	netModules    = []string{"8021q", "dummy"}
	virtioModules = []string{
		"virtio_pci", "virtio_net", "virtio_blk", "virtio_rng",
	}
)

func concat(lists ...[]string) []string {
	var out []string
	for _, l := range lists {
		out = append(out, l...)
	}
	return out
}
