package site

import "net/netip"

// IsNetworkOrBroadcast says whether a is the network or the broadcast
// address of the IPv4 subnet p: the lowest or the highest address of p
// (p's host bits are ignored, so a host address with its prefix length,
// 10.77.0.1/24, names its subnet). Subnets of /31 and /32 have neither
// (RFC 3021: both addresses of a /31 are hosts), and neither has an
// address that is not IPv4 or not in p.
func IsNetworkOrBroadcast(a netip.Addr, p netip.Prefix) bool {
	if !a.Is4() || !p.Addr().Is4() || p.Bits() < 0 || p.Bits() > 30 {
		return false
	}
	p = p.Masked()
	return a == p.Addr() || a == lastAddr(p)
}

// lastAddr is the highest address of the IPv4 prefix p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
