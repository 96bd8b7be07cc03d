package image

import (
	"path"
	"strconv"

	"github.com/otgate/otgate/internal/bootcfg"
	"github.com/otgate/otgate/services/identity/api"
	"github.com/otgate/otgate/services/overlay/alloc"
	"github.com/otgate/otgate/services/proxy/adminapi"
	"github.com/otgate/otgate/services/segment/baseline"
)

// The proxy's places on the device.
const (
	proxyBinary   = "/bin/otgate-proxy"
	proxyStateDir = "/perm/proxy" // the sealed user store
	proxyAuditDir = "/perm/audit" // the session log
)

// proxyRow is the identity-aware proxy: critical (no access to any asset
// without it), started only once the trust gate passed (never in
// quarantine: "trust" fails without restart and init does not start its
// dependents; a proxy started anyway could not unseal its user store or
// CA key and would exit), after the segment ruleset is in place.
//
// Before each start init gives it its directories (the row's OwnedDirs:
// user store, audit log, admin socket directory, uid 101, mode 0700) and
// lets its group read the applied policy (GroupReadDirs: /perm/policy
// becomes set-group-ID, so a policy `otgate site apply` stores later is
// readable too). Init does it, like systemd's StateDirectory=, instead of
// a root one-shot process: one Go process fewer on every boot's path.
//
// It runs as otgate-proxy (uid 101), the only uid the segment ruleset
// lets reach assets, and sets baseline.ProxyMark on its asset sockets,
// which the ruleset also requires. SO_MARK needs CAP_NET_RAW (Linux 5.17
// and later; CAP_NET_ADMIN before): the row raises CAP_NET_RAW as its only
// ambient capability, not CAP_NET_ADMIN, which would let a compromised
// proxy rewrite the firewall. The proxy itself takes back what else
// CAP_NET_RAW grants (packet and raw sockets, IP_TRANSPARENT) with a
// seccomp filter at its start (internal/sandbox). The listeners are :8443
// (login, tunnels) and :802 (Modbus/TCP Security on each asset's overlay
// endpoint); the baseline and segment rulesets admit them on the uplink
// only. Port 802 is below 1024: the row also raises
// CAP_NET_BIND_SERVICE, which the proxy drops once both are bound. Its
// group reads the overlay allocator's table (GroupReadDirs
// /perm/overlay), which names the asset behind each endpoint.
func proxyRow() ServiceRow {
	return ServiceRow{MultiCall: true, Service: bootcfg.Service{
		Name: "proxy", Binary: proxyBinary, Readiness: bootcfg.ReadyNotify, Timeout: readinessTimeout,
		Critical: true, DependsOn: []string{"trust", "segment"}, Nice: pathNice,
		UID: baseline.ProxyUID, GID: baseline.ProxyUID, Capabilities: []string{"CAP_NET_RAW", "CAP_NET_BIND_SERVICE"},
		OwnedDirs:     []string{proxyStateDir, proxyAuditDir, path.Dir(adminapi.DefaultSocket)},
		GroupReadDirs: []string{policyDir, path.Dir(alloc.DefaultStatePath)},
		Args: []string{"-listen", ":" + strconv.Itoa(baseline.ProxyListenPort),
			"-modbus-security", ":" + strconv.Itoa(baseline.ModbusSecurityPort), "-overlay-state", alloc.DefaultStatePath,
			"-policy", appliedPolicy,
			"-state", proxyStateDir, "-audit", proxyAuditDir, "-admin", adminapi.DefaultSocket,
			"-identity", api.DefaultSocket, "-mark", strconv.Itoa(baseline.ProxyMark)},
	}}
}
