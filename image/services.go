package image

import (
	"time"

	"github.com/otgate/otgate/internal/bootcfg"
)

// ServiceRow is one row of an image's service table: what init runs
// (Service, whose Binary is the absolute path in the image) and the Go
// main package built into that binary, relative to the source root.
// Several rows may share one binary (and so one package).
type ServiceRow struct {
	Service bootcfg.Service
	Package string
	// MultiCall: Service.Binary is a link to /bin/otgate, which runs the
	// service its name says (cmd/otgate's serviceMains); Package is then
	// empty.
	MultiCall bool
}

// readinessTimeout is how long init waits for a service to report ready.
const readinessTimeout = 30 * time.Second

// trustWait is how long "trust" waits for the identity service to answer:
// its readiness timeout and two restarts with back-off.
const trustWait = 90 * time.Second

// pathNice is the scheduling priority of the services on the path to an
// asset: segment (enforcement), identity and trust (TPM unseal, audit
// signatures) and the proxy (the data plane). They get ahead of
// housekeeping (overlay, netconf) when the CPUs are busy: at boot, where
// each TPM command's wake-ups otherwise wait behind the other services
// (measured under TCG: 20-40 ms per command instead of 5), and under load.
const pathNice = -10

// timesyncNice is the time service's priority: below everything else
// (its work is a few UDP packets every few minutes; it must not slow the
// boot to ready).
const timesyncNice = 10

// Paths on the device the rows share.
const (
	policyDir     = "/perm/policy"
	appliedPolicy = policyDir + "/applied.cbor"
	timesyncDir   = "/perm/timesync"
)

// ProductionServices is the service table of every image. A row is added
// when its service's main package lands in services/<name>/cmd (binary
// /bin/otgate-<name>).
//
// Start order: "policy" stores the image's default site policy on a first
// boot; segment (critical: the gate's enforcement), overlay and netconf
// follow the applied policy; identity opens the TPM identity and "trust"
// stops there when the gate is in quarantine. The proxy's rows
// (proxyrows.go) depend on "trust" (so it never starts in quarantine) and
// on segment; it runs as uid 101 with CAP_NET_RAW for its SO_MARK (see
// services/segment/baseline).
//
// The interface names are the boards' NIC roles (eth0 uplink, eth1 OT
// downlink on every board; a test keeps them in step). The gate's
// addresses on the OT side are not here: each zone of the applied site
// policy names its own (gate_address; the default site's is 10.77.0.1 in
// 10.77.0.0/24, rootfs/etc/otgate/site.yaml), and netconf follows the
// policy. So is the uplink's mode: DHCP unless the site file's uplink
// section says static (netconf reads it when it starts; the row names
// only the uplink NIC).
var ProductionServices = []ServiceRow{
	// policy: on a first boot, store the image's compiled default site
	// policy; never replaces an applied one (nor a corrupt one). Init
	// skips it once a policy is applied (the process would only find that
	// out; every other service but identity waits for it).
	{Service: bootcfg.Service{
		Name: "policy", Binary: otgateBinary, Readiness: bootcfg.ReadyExit, Timeout: readinessTimeout,
		Args:         []string{"site", "apply", "-if-missing", "-dir", policyDir, defaultPolicyPath},
		SkipIfExists: appliedPolicy,
	}},
	{MultiCall: true, Service: bootcfg.Service{
		Name: "segment", Binary: "/bin/otgate-segment", Readiness: bootcfg.ReadyNotify, Timeout: readinessTimeout,
		Critical: true, DependsOn: []string{"policy"}, Nice: pathNice,
		Args: []string{"-policy", appliedPolicy, "-boot", bootcfg.Path, "-socket", bootcfg.RunDir + "/segment/segment.sock",
			"-state", "/perm/segment/would-block.cbor"},
	}},
	{MultiCall: true, Service: bootcfg.Service{
		Name: "overlay", Binary: "/bin/otgate-overlay", Readiness: bootcfg.ReadyNotify, Timeout: readinessTimeout,
		DependsOn: []string{"policy"},
		Args:      []string{"-policy", appliedPolicy, "-state", "/perm/overlay/alloc.cbor", "-socket", bootcfg.RunDir + "/overlay/overlay.sock"},
	}},
	{MultiCall: true, Service: bootcfg.Service{
		Name: "netconf", Binary: "/bin/otgate-netconf", Readiness: bootcfg.ReadyNotify, Timeout: readinessTimeout,
		DependsOn: []string{"policy"},
		Args: []string{"-uplink", "eth0", "-downlink", "eth1",
			"-policy", appliedPolicy, "-socket", bootcfg.RunDir + "/netconf/netconf.sock", "-dhcp-hint", "/perm/netconf/dhcp-hint.cbor"},
	}},
	// identity: TPM device key, sealed data key, local API socket (the
	// proxy, uid 101, may use it). Not critical yet: images booted without
	// a TPM (plain QEMU runs) must still reach ready; make it critical once
	// every boot has a TPM.
	{MultiCall: true, Service: bootcfg.Service{
		Name: "identity", Binary: "/bin/otgate-identity", Readiness: bootcfg.ReadyNotify,
		Timeout: readinessTimeout, Nice: pathNice,
		Args: []string{"-state", "/perm/identity", "-tpm", "/dev/tpmrm0", "-socket-gid", "101", "-allow", "0=admin,101=proxy"},
	}},
	// trust: done when the identity is not in quarantine; in quarantine (or
	// with no identity answering within trustWait) it fails without
	// restart (bootcfg.ExitNoRestart) and its dependents never start. It
	// starts beside identity, not after it, and waits for identity's socket
	// itself: its process start-up then overlaps identity's TPM work
	// instead of adding to the path to ready (0.05-0.2 s under TCG).
	{Service: bootcfg.Service{
		Name: "trust", Binary: otgateBinary, Readiness: bootcfg.ReadyExit, Timeout: trustWait + readinessTimeout,
		Args: []string{"identity", "check-trust", "-wait", trustWait.String()}, Nice: pathNice,
	}},
	proxyRow(),
	// timesync: the clock from the site file's uplink.nts servers (NTS),
	// else its uplink.ntp servers, else the DHCP lease's
	// (services/timesync). Not critical and ready at once: the boot (and
	// "init: ready") never waits for a sync; after netconf, which brings
	// the uplink up. It starts while the path services are still coming
	// up, so it runs at nice 10 (housekeeping: its first query and its
	// start-up yield the CPUs to them). It runs as root and keeps only
	// CAP_SYS_TIME (it limits itself at its start: internal/sandbox);
	// init gives it /perm/timesync, where it keeps the clock floor (the
	// last known-good time: a gate with a dead RTC battery boots at it,
	// not in 2000).
	{MultiCall: true, Service: bootcfg.Service{
		Name: "timesync", Binary: "/bin/otgate-timesync", Readiness: bootcfg.ReadyNotify, Timeout: readinessTimeout,
		DependsOn: []string{"netconf"}, Nice: timesyncNice,
		Args: []string{"-policy", appliedPolicy, "-rtc", "/dev/rtc0", "-marker", bootcfg.RunDir + "/timesync/synced",
			"-clock-file", timesyncDir + "/clock"},
		OwnedDirs: []string{timesyncDir},
	}},
}

// testsvcBinary is the test service's binary in test images.
const testsvcBinary = "/bin/otgate-testsvc"

// TestServices is added by WithTestServices: the test service
// (internal/testsvc) in several modes, for the integration tests.
var TestServices = []ServiceRow{
	testRow("steady", true, bootcfg.ReadyNotify, nil, "-mode=steady"),
	testRow("flaky", false, bootcfg.ReadyNotify, nil, "-mode=flaky", "-crashes=2", "-state=/run/otgate/testsvc-flaky"),
	testRow("crashloop", false, bootcfg.ReadyNotify, nil, "-mode=crash"),
	statusdumpRow(),
	// netdump: the gate's links, addresses and nftables tables once netconf
	// has configured both sides, and what a connection from the gate to
	// the default site's PLC does as root and as the proxy.
	netdumpRow(),
	// pcrdump: the TPM's SHA-256 PCRs as this boot left them (after init's
	// boot measurement), to compare boots and check a board's PCR choice.
	testRow("pcrdump", false, bootcfg.ReadyExit, nil, "-mode=pcrs"),
}

// netdumpRow waits (up to 90 s: DHCP under TCG on a busy machine) for both
// sides to be configured before it dumps.
func netdumpRow() ServiceRow {
	r := testRow("netdump", false, bootcfg.ReadyExit, []string{"segment", "overlay", "netconf"},
		"-mode=netdump", "-wait=90s", "-wait-addr=eth0,eth1", "-probe=10.77.0.20:502")
	r.Service.Timeout = 2 * time.Minute
	return r
}

// statusdumpRow prints the status table 20 s after it starts, when the
// crash loop has been given up on and flaky has recovered, and once the
// trust gate has settled (done, or failed in quarantine).
func statusdumpRow() ServiceRow {
	r := testRow("statusdump", false, bootcfg.ReadyExit, []string{"steady"}, "-mode=status", "-after=20s", "-wait-for=trust")
	r.Service.Timeout = 2 * time.Minute
	return r
}

func testRow(name string, critical bool, readiness string, deps []string, args ...string) ServiceRow {
	return ServiceRow{
		Package: "./internal/testsvc",
		Service: bootcfg.Service{
			Name: name, Binary: testsvcBinary, Args: args, DependsOn: deps,
			Critical: critical, Readiness: readiness, Timeout: readinessTimeout,
		},
	}
}
