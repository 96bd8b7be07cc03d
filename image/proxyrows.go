package image

import (
	"path"
	"strconv"

	"github.com/otgate/otgate/internal/bootcfg"
	"github.com/otgate/otgate/services/identity/api"
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
// seccomp filter at its start (internal/sandbox). The listener is :8443; the baseline and
// segment rulesets admit it on the uplink only.
func proxyRow() ServiceRow {
	return ServiceRow{MultiCall: true, Service: bootcfg.Service{
		Name: "proxy", Binary: proxyBinary, Readiness: bootcfg.ReadyNotify, Timeout: readinessTimeout,
		Critical: true, DependsOn: []string{"trust", "segment"}, Nice: pathNice,
		UID: baseline.ProxyUID, GID: baseline.ProxyUID, Capabilities: []string{"CAP_NET_RAW"},
		OwnedDirs:     []string{proxyStateDir, proxyAuditDir, path.Dir(adminapi.DefaultSocket)},
		GroupReadDirs: []string{policyDir},
		Args: []string{"-listen", ":" + strconv.Itoa(baseline.ProxyListenPort), "-policy", appliedPolicy,
			"-state", proxyStateDir, "-audit", proxyAuditDir, "-admin", adminapi.DefaultSocket,
			"-identity", api.DefaultSocket, "-mark", strconv.Itoa(baseline.ProxyMark)},
	}}
}
