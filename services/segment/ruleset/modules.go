package ruleset

// KernelModules are the modules (in load order) the gate's ruleset needs
// on a kernel that builds nftables as modules, such as Debian's: the core
// (tables, sets, verdict maps, counters, payload, meta, lookup, dynset),
// conntrack for "ct state" and "ct direction", and the log and limit
// expressions of monitor mode. Init must load them before InstallBaseline:
// the kernel cannot load a missing expression module itself without
// /sbin/modprobe, and the batch then fails with "no such file or directory".
// nfnetlink_log delivers the would-block log lines to NFLOG listeners; the
// ruleset loads without it.
var KernelModules = []string{
	"nfnetlink", "libcrc32c", "nf_tables",
	"nf_defrag_ipv4", "nf_defrag_ipv6", "nf_conntrack", "nft_ct",
	"nft_log", "nft_limit", "nfnetlink_log",
}
