package ruleset

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/otgate/otgate/internal/namepattern"
)

// Zone modes.
const (
	// ModeEnforce drops every flow the policy does not allow.
	ModeEnforce = "enforce"
	// ModeMonitor accepts, counts and logs the flows enforce mode would
	// drop toward or out of the zone.
	ModeMonitor = "monitor"
)

// ErrInvalidSpec is wrapped by every validation error.
var ErrInvalidSpec = errors.New("invalid segment spec")

// ProxyIdentity names the proxy's sockets: the only sockets allowed to open
// connections toward the OT side.
type ProxyIdentity struct {
	// UID is the proxy's dedicated uid (not 0).
	UID uint32 `cbor:"1,keyasint" json:"uid"`
	// Mark, when not 0, must also be set on the proxy's sockets (SO_MARK).
	Mark uint32 `cbor:"2,keyasint,omitempty" json:"mark,omitempty"`
}

// BaselineSpec is what init knows before any service runs: the interfaces by
// role, the gate's own listeners and the proxy's identity. The baseline
// ruleset built from it has no assets, so nothing on the OT side is reachable.
type BaselineSpec struct {
	// Uplink is the user/management interface name.
	Uplink string `cbor:"1,keyasint" json:"uplink"`
	// Downlinks are the OT-side interface names (physical or VLAN).
	Downlinks []string `cbor:"2,keyasint" json:"downlinks"`
	// ListenPorts are the gate's own TCP listeners reachable on the uplink.
	ListenPorts []uint16 `cbor:"3,keyasint" json:"listen_ports"`
	// DHCPClient allows DHCP replies (udp 67 -> 68) on the uplink.
	DHCPClient bool          `cbor:"4,keyasint" json:"dhcp_client"`
	Proxy      ProxyIdentity `cbor:"5,keyasint" json:"proxy"`
}

// Asset is one OT device behind the gate.
type Asset struct {
	Name string `cbor:"1,keyasint" json:"name"`
	Zone string `cbor:"2,keyasint" json:"zone"`
	// Mode is the zone's mode: ModeEnforce or ModeMonitor. All assets of a
	// zone must agree.
	Mode string `cbor:"3,keyasint" json:"mode"`
	// Address is the asset's underlay IPv4 address.
	Address string `cbor:"4,keyasint" json:"address"`
	// TCPPorts the proxy may connect to.
	TCPPorts []uint16 `cbor:"5,keyasint" json:"tcp_ports"`
	// Endpoint is the asset's overlay proxy endpoint, if known (shown only).
	Endpoint string `cbor:"6,keyasint,omitempty" json:"endpoint,omitempty"`
}

// Exception is an explicit forwarded flow with an owner and an expiry.
type Exception struct {
	ID       string    `cbor:"1,keyasint" json:"id"`
	From     string    `cbor:"2,keyasint" json:"from"`
	To       string    `cbor:"3,keyasint" json:"to"`
	Protocol string    `cbor:"4,keyasint" json:"protocol"` // "tcp" or "udp"
	Port     uint16    `cbor:"5,keyasint" json:"port"`
	Owner    string    `cbor:"6,keyasint" json:"owner"`
	Expires  time.Time `cbor:"7,keyasint" json:"expires"`
}

// Spec is the desired state of the segment service. The policy compiler
// fills it; it is independent of the site file's format.
type Spec struct {
	BaselineSpec
	Assets     []Asset     `cbor:"10,keyasint" json:"assets"`
	Exceptions []Exception `cbor:"11,keyasint" json:"exceptions"`
	// LogGroup is the NFLOG group of would-block log lines (0 is valid).
	LogGroup uint16 `cbor:"12,keyasint,omitempty" json:"log_group,omitempty"`
	// WouldBlockTTL is how long an idle would-block flow stays in the
	// kernel's report sets (default DefaultWouldBlockTTL).
	WouldBlockTTL time.Duration `cbor:"13,keyasint,omitempty" json:"would_block_ttl,omitempty"`
	// EnforceInterfaces are the downlinks (VLAN sub-interfaces included)
	// that carry an enforce zone. Nothing is forwarded out of them that
	// the exceptions, an asset's own verdict or the monitor-mode replies
	// did not let through: a monitor-zone asset reaches no host there
	// that is not a declared asset of a monitor zone. An interface that
	// carries an enforce zone and a monitor zone is one of them, and
	// sitespec lists those that carry no zone too (only monitor zones'
	// own interfaces are left out). nil is "not given", which a spec
	// file with a monitor-mode asset may not be (segment.LoadSpec: it
	// would leave every downlink open to the monitor zones); an empty
	// list is none (every downlink carries monitor zones alone).
	// Written even when nil or empty, so a file keeps the difference.
	EnforceInterfaces []string `cbor:"14,keyasint" json:"enforce_interfaces"`
}

// DefaultWouldBlockTTL is used when Spec.WouldBlockTTL is 0.
const DefaultWouldBlockTTL = 24 * time.Hour

var (
	ifNameRE = namepattern.New("[A-Za-z0-9]", "[A-Za-z0-9._@-]", 15)
	nameRE   = namepattern.New("[A-Za-z0-9]", "[A-Za-z0-9._-]", 63)
)

func invalid(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidSpec, fmt.Sprintf(format, a...))
}

// Validate checks the interfaces and the proxy identity.
func (b *BaselineSpec) Validate() error {
	if !ifNameRE.MatchString(b.Uplink) {
		return invalid("uplink: bad interface name %q", b.Uplink)
	}
	if len(b.Downlinks) == 0 {
		return invalid("downlinks: none given (the OT side must be named to be protected)")
	}
	seen := map[string]string{b.Uplink: "uplink"}
	for i, d := range b.Downlinks {
		if !ifNameRE.MatchString(d) {
			return invalid("downlinks[%d]: bad interface name %q", i, d)
		}
		if prev, dup := seen[d]; dup {
			return invalid("downlinks[%d]: interface %q already used as %s", i, d, prev)
		}
		seen[d] = fmt.Sprintf("downlinks[%d]", i)
	}
	ports := map[uint16]bool{}
	for i, p := range b.ListenPorts {
		if p == 0 {
			return invalid("listen_ports[%d]: port 0", i)
		}
		if ports[p] {
			return invalid("listen_ports[%d]: duplicate port %d", i, p)
		}
		ports[p] = true
	}
	if b.Proxy.UID == 0 {
		return invalid("proxy.uid: 0 (root) cannot be the proxy identity: every root process would pass")
	}
	if b.Proxy.Mark&WouldBlockCtMark != 0 {
		return invalid("proxy.mark: %#x shares bit %#x with the conntrack mark of would-block flows", b.Proxy.Mark, WouldBlockCtMark)
	}
	if b.Proxy.Mark&UplinkCtMark != 0 {
		return invalid("proxy.mark: %#x shares bit %#x with the conntrack mark of uplink flows", b.Proxy.Mark, UplinkCtMark)
	}
	if b.Proxy.Mark&OTCtMark != 0 {
		return invalid("proxy.mark: %#x shares bit %#x with the conntrack mark of OT-side flows", b.Proxy.Mark, OTCtMark)
	}
	return nil
}

// Validate checks the whole spec. It does not look at expiry times: expired
// exceptions are valid and simply not installed (see Active).
func (s *Spec) Validate() error {
	if err := s.BaselineSpec.Validate(); err != nil {
		return err
	}
	if s.WouldBlockTTL < 0 {
		return invalid("would_block_ttl: negative %s", s.WouldBlockTTL)
	}
	downlink := map[string]bool{}
	for _, d := range s.Downlinks {
		downlink[d] = true
	}
	enforceIf := map[string]bool{}
	for i, n := range s.EnforceInterfaces {
		if !downlink[n] {
			return invalid("enforce_interfaces[%d]: interface %q is not a downlink", i, n)
		}
		if enforceIf[n] {
			return invalid("enforce_interfaces[%d]: duplicate interface %q", i, n)
		}
		enforceIf[n] = true
	}
	names := map[string]bool{}
	addrs := map[netip.Addr]string{}
	zoneMode := map[string]string{}
	for i, a := range s.Assets {
		where := fmt.Sprintf("assets[%d] %q", i, a.Name)
		if !nameRE.MatchString(a.Name) {
			return invalid("assets[%d]: bad name %q", i, a.Name)
		}
		if names[a.Name] {
			return invalid("%s: duplicate asset name", where)
		}
		names[a.Name] = true
		if !nameRE.MatchString(a.Zone) {
			return invalid("%s: bad zone %q", where, a.Zone)
		}
		if a.Mode != ModeEnforce && a.Mode != ModeMonitor {
			return invalid("%s: mode %q (want %s or %s)", where, a.Mode, ModeEnforce, ModeMonitor)
		}
		if m, ok := zoneMode[a.Zone]; ok && m != a.Mode {
			return invalid("%s: zone %q mode %q, but another asset of the zone says %q", where, a.Zone, a.Mode, m)
		}
		zoneMode[a.Zone] = a.Mode
		ip, err := parseIPv4(a.Address)
		if err != nil {
			return invalid("%s: address: %v", where, err)
		}
		if other, dup := addrs[ip]; dup {
			return invalid("%s: address %s already used by asset %q", where, ip, other)
		}
		addrs[ip] = a.Name
		ports := map[uint16]bool{}
		for j, p := range a.TCPPorts {
			if p == 0 {
				return invalid("%s: tcp_ports[%d]: port 0", where, j)
			}
			if ports[p] {
				return invalid("%s: tcp_ports[%d]: duplicate port %d", where, j, p)
			}
			ports[p] = true
		}
		if a.Endpoint != "" {
			if _, err := parseIPv4(a.Endpoint); err != nil {
				return invalid("%s: endpoint: %v", where, err)
			}
		}
	}
	ids := map[string]bool{}
	for i, e := range s.Exceptions {
		where := fmt.Sprintf("exceptions[%d] %q", i, e.ID)
		if !nameRE.MatchString(e.ID) {
			return invalid("exceptions[%d]: bad id %q", i, e.ID)
		}
		if ids[e.ID] {
			return invalid("%s: duplicate id", where)
		}
		ids[e.ID] = true
		if _, err := parseIPv4(e.From); err != nil {
			return invalid("%s: from: %v", where, err)
		}
		if _, err := parseIPv4(e.To); err != nil {
			return invalid("%s: to: %v", where, err)
		}
		if _, err := protoNumber(e.Protocol); err != nil {
			return invalid("%s: %v", where, err)
		}
		if e.Port == 0 {
			return invalid("%s: port 0", where)
		}
		if strings.TrimSpace(e.Owner) == "" {
			return invalid("%s: no owner", where)
		}
		if e.Expires.IsZero() {
			return invalid("%s: no expiry (every exception must expire)", where)
		}
	}
	return nil
}

// Active returns the exceptions that have not expired at now, sorted by
// expiry. An exception whose expiry is at or before now is never installed.
func (s *Spec) Active(now time.Time) []Exception {
	var out []Exception
	for _, e := range s.Exceptions {
		if e.Expires.After(now) {
			out = append(out, e)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Expires.Before(out[j].Expires) })
	return out
}

// Routing says why spec at now needs the gate to route packets between
// its interfaces: the active exceptions and the monitor zones (zones in
// monitor mode with at least one asset). Both zero: nothing is ever
// forwarded, so IPv4 forwarding can stay off.
func (s *Spec) Routing(now time.Time) (exceptions, monitorZones int) {
	zones := map[string]bool{}
	for _, a := range s.Assets {
		if a.Mode == ModeMonitor {
			zones[a.Zone] = true
		}
	}
	return len(s.Active(now)), len(zones)
}

// NextExpiry is the earliest expiry after now, or the zero time.
func (s *Spec) NextExpiry(now time.Time) time.Time {
	act := s.Active(now)
	if len(act) == 0 {
		return time.Time{}
	}
	return act[0].Expires
}

func (s *Spec) wouldBlockTTL() time.Duration {
	if s.WouldBlockTTL == 0 {
		return DefaultWouldBlockTTL
	}
	return s.WouldBlockTTL
}

func parseIPv4(s string) (netip.Addr, error) {
	ip, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%q is not an IP address", s)
	}
	if !ip.Is4() {
		return netip.Addr{}, fmt.Errorf("%q is not an IPv4 address", s)
	}
	if ip.IsUnspecified() || ip.IsMulticast() || ip == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return netip.Addr{}, fmt.Errorf("%q is not a unicast address", s)
	}
	return ip, nil
}

func protoNumber(p string) (byte, error) {
	switch p {
	case "tcp":
		return 6, nil
	case "udp":
		return 17, nil
	}
	return 0, fmt.Errorf("protocol %q (want tcp or udp)", p)
}

func protoName(n byte) string {
	switch n {
	case 6:
		return "tcp"
	case 17:
		return "udp"
	case 1:
		return "icmp"
	}
	return fmt.Sprintf("proto-%d", n)
}
