package site

import (
	"net/netip"
	"testing"
)

func TestIsNetworkOrBroadcast(t *testing.T) {
	for _, c := range []struct {
		addr, prefix string
		want         bool
	}{
		{"10.77.0.0", "10.77.0.0/24", true},
		{"10.77.0.255", "10.77.0.0/24", true},
		{"10.77.0.1", "10.77.0.0/24", false},
		{"10.77.0.254", "10.77.0.0/24", false},
		{"10.77.0.0", "10.77.0.1/24", true}, // a host address names its subnet
		{"10.77.0.255", "10.77.0.9/24", true},
		{"10.77.1.0", "10.77.0.0/24", false}, // outside: neither
		{"10.76.255.255", "10.77.0.0/24", false},
		{"10.20.3.255", "10.20.0.0/22", true},
		{"10.20.1.255", "10.20.0.0/22", false},
		{"10.20.2.0", "10.20.0.0/22", false},
		{"192.168.1.4", "192.168.1.4/30", true},
		{"192.168.1.5", "192.168.1.4/30", false},
		{"192.168.1.6", "192.168.1.4/30", false},
		{"192.168.1.7", "192.168.1.4/30", true},
		{"192.168.1.6", "192.168.1.6/31", false}, // RFC 3021: both are hosts
		{"192.168.1.7", "192.168.1.6/31", false},
		{"192.168.1.6", "192.168.1.6/32", false},
		{"0.0.0.0", "0.0.0.0/8", true},
		{"0.255.255.255", "0.0.0.0/8", true},
		{"255.255.255.255", "255.255.255.0/24", true},
		{"255.255.255.254", "255.255.255.252/30", false},
		{"255.255.255.255", "255.255.255.252/30", true},
		{"0.0.0.0", "0.0.0.0/0", true},
		{"255.255.255.255", "0.0.0.0/0", true},
		{"10.0.0.0", "10.0.0.0/8", true},
		{"10.255.255.255", "10.0.0.0/8", true},
		{"fd00::", "fd00::/64", false}, // IPv4 only
		{"::ffff:10.77.0.0", "10.77.0.0/24", false},
		{"10.77.0.0", "::ffff:10.77.0.0/120", false},
	} {
		a, p := netip.MustParseAddr(c.addr), netip.MustParsePrefix(c.prefix)
		if got := IsNetworkOrBroadcast(a, p); got != c.want {
			t.Errorf("IsNetworkOrBroadcast(%s, %s) = %v, want %v", a, p, got, c.want)
		}
	}
	if IsNetworkOrBroadcast(netip.Addr{}, netip.Prefix{}) || IsNetworkOrBroadcast(netip.MustParseAddr("10.0.0.0"), netip.Prefix{}) {
		t.Error("zero values: want false")
	}
}
