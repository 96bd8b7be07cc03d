// Package baseline says what the gate's baseline ruleset protects before
// any service runs: it derives a ruleset.BaselineSpec from the boot config
// (the board's interfaces by role) and the gate's fixed facts (the proxy's
// uid, socket mark and listener). Init installs it before any interface
// comes up; the segment service builds its full Spec on top of the same
// baseline, so the table it installs keeps every baseline rule.
package baseline

import (
	"github.com/otgate/otgate/internal/bootcfg"
	"github.com/otgate/otgate/services/segment/ruleset"
)

// The proxy's identity and listener. ProxyUID is "otgate-proxy" in
// rootfs/etc/passwd (a test checks it). The proxy sets ProxyMark with
// SO_MARK on every socket toward an asset; that needs CAP_NET_RAW (Linux
// 5.17 and later, CAP_NET_ADMIN before), which the proxy's service row
// raises as an ambient capability.
const (
	ProxyUser       = "otgate-proxy"
	ProxyUID        = 101
	ProxyMark       = 0x6f74 // "ot"
	ProxyListenPort = 8443
	// ModbusSecurityPort is the proxy's Modbus/TCP Security listener
	// (IANA mbap-s), served on each asset's overlay endpoint.
	ModbusSecurityPort = 802
)

// FromBoot returns the baseline of a gate with the boot config's uplink and
// downlinks: input dropped except loopback, established/related, DHCP
// replies and the proxy's listeners on the uplink; forward dropped; output
// only through loopback and the uplink, nothing toward the OT side (no
// asset is known yet).
func FromBoot(c *bootcfg.Config) ruleset.BaselineSpec {
	return ruleset.BaselineSpec{
		Uplink:      c.Uplink,
		Downlinks:   append([]string(nil), c.Downlinks...),
		ListenPorts: []uint16{ProxyListenPort, ModbusSecurityPort},
		DHCPClient:  true,
		Proxy:       ruleset.ProxyIdentity{UID: ProxyUID, Mark: ProxyMark},
	}
}
