package alloc

import (
	"errors"
	"fmt"
	"net/netip"
)

// ErrCollision: the overlay prefix overlaps a network the gate is on.
var ErrCollision = errors.New("overlay prefix collision")

// Network is a subnet the gate is attached to, named for messages.
type Network struct {
	Name   string // e.g. "uplink eth0", "zone cell-1"
	Prefix netip.Prefix
}

// KnownRange is an address range a common overlay client uses.
type KnownRange struct {
	Product string
	Prefix  netip.Prefix
	Note    string
}

// KnownRanges lists the CGNAT ranges of common overlay/VPN clients an
// operator's laptop may be running. An overlay prefix inside one of them
// may be shadowed by that client's routes on the user's machine.
var KnownRanges = []KnownRange{
	{"Tailscale", netip.MustParsePrefix("100.64.0.0/10"), "node addresses"},
	{"Tailscale", netip.MustParsePrefix("100.100.100.100/32"), "MagicDNS resolver (quad100)"},
	{"Headscale/NetBird", netip.MustParsePrefix("100.64.0.0/10"), "default node addresses"},
	{"Teleport VNet", netip.MustParsePrefix("100.64.0.0/10"), "default VNet IPv4 range"},
	{"Cloudflare One", netip.MustParsePrefix("100.64.0.0/12"), "Cloudflare source IPs"},
	{"Cloudflare One", netip.MustParsePrefix("100.80.0.0/16"), "Gateway initial resolved IPs (older default)"},
	{"Cloudflare One / WARP", netip.MustParsePrefix("100.96.0.0/12"), "WARP device IPs"},
	{"Cloudflare One", netip.MustParsePrefix("100.112.0.0/16"), "private load balancer IPs"},
}

// Warning is a non-fatal finding about the overlay prefix.
type Warning struct {
	Product string
	Range   netip.Prefix
	Note    string
}

func (w Warning) String() string {
	return fmt.Sprintf("overlay prefix overlaps %s %s (%s): users running %s may not reach the gate's endpoints; pick a prefix outside it if they do", w.Product, w.Range, w.Note, w.Product)
}

// CheckCollisions returns an error (ErrCollision, one line per network)
// when prefix overlaps any of the gate's own networks (uplink, OT
// subnets), and warnings for each known overlay client range it overlaps.
func CheckCollisions(prefix netip.Prefix, nets []Network) ([]Warning, error) {
	var errs []error
	for _, n := range nets {
		if n.Prefix.IsValid() && n.Prefix.Overlaps(prefix) {
			errs = append(errs, fmt.Errorf("%w: %s overlaps %s %s", ErrCollision, prefix, n.Name, n.Prefix))
		}
	}
	var warns []Warning
	for _, k := range KnownRanges {
		if k.Prefix.Overlaps(prefix) {
			warns = append(warns, Warning{Product: k.Product, Range: k.Prefix, Note: k.Note})
		}
	}
	return warns, errors.Join(errs...)
}
