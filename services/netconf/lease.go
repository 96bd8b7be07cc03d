package netconf

import (
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// Lease is what the uplink holds from a DHCP server.
type Lease struct {
	Address  netip.Prefix  `cbor:"1,keyasint" json:"address"`
	Gateway  netip.Addr    `cbor:"2,keyasint,omitempty" json:"gateway,omitempty"`
	DNS      []netip.Addr  `cbor:"3,keyasint,omitempty" json:"dns,omitempty"`
	Search   []string      `cbor:"4,keyasint,omitempty" json:"search,omitempty"`
	Server   netip.Addr    `cbor:"5,keyasint" json:"server"`
	Obtained time.Time     `cbor:"6,keyasint" json:"obtained"`
	Duration time.Duration `cbor:"7,keyasint" json:"duration"`
	T1       time.Duration `cbor:"8,keyasint" json:"t1"`
	T2       time.Duration `cbor:"9,keyasint" json:"t2"`
}

// Renew, Rebind and Expiry are the lease's deadlines.
func (l *Lease) Renew() time.Time  { return l.Obtained.Add(l.T1) }
func (l *Lease) Rebind() time.Time { return l.Obtained.Add(l.T2) }
func (l *Lease) Expiry() time.Time { return l.Obtained.Add(l.Duration) }

// leaseFromACK reads a lease out of an ACK received at obtained. T1 and
// T2 default to 1/2 and 7/8 of the lease time (RFC 2131 4.4.5) and are
// forced into order.
func leaseFromACK(ack *dhcpv4.DHCPv4, obtained time.Time) Lease {
	ip, _ := netip.AddrFromSlice(ack.YourIPAddr.To4())
	mask := ack.SubnetMask()
	if mask == nil {
		mask = ack.YourIPAddr.DefaultMask()
	}
	ones, _ := mask.Size()
	l := Lease{Address: netip.PrefixFrom(ip, ones), Obtained: obtained}
	if s, ok := netip.AddrFromSlice(ack.ServerIdentifier().To4()); ok {
		l.Server = s
	}
	for _, r := range ack.Router() {
		if g, ok := netip.AddrFromSlice(r.To4()); ok && l.Address.Masked().Contains(g) && g != ip {
			l.Gateway = g
			break
		}
	}
	for _, d := range ack.DNS() {
		if a, ok := netip.AddrFromSlice(d.To4()); ok {
			l.DNS = append(l.DNS, a)
		}
	}
	if ds := ack.DomainSearch(); ds != nil {
		l.Search = append(l.Search, ds.Labels...)
	}
	if dn := strings.TrimSuffix(ack.DomainName(), "."); dn != "" && len(l.Search) == 0 {
		l.Search = []string{dn}
	}
	l.Duration = ack.IPAddressLeaseTime(0)
	if l.Duration <= 0 {
		l.Duration = time.Hour // no lease time: RFC 2131 requires one; be conservative
	}
	l.T1 = ack.IPAddressRenewalTime(l.Duration / 2)
	l.T2 = ack.IPAddressRebindingTime(l.Duration * 7 / 8)
	if l.T2 <= 0 || l.T2 >= l.Duration {
		l.T2 = l.Duration * 7 / 8
	}
	if l.T1 <= 0 || l.T1 >= l.T2 {
		l.T1 = l.Duration / 2
		if l.T1 >= l.T2 {
			l.T1 = l.T2 / 2
		}
	}
	return l
}

// requestedOptions are asked for in every message.
var requestedOptions = dhcpv4.WithRequestedOptions(
	dhcpv4.OptionSubnetMask,
	dhcpv4.OptionRouter,
	dhcpv4.OptionDomainNameServer,
	dhcpv4.OptionDomainName,
	dhcpv4.OptionDNSDomainSearchList,
	dhcpv4.OptionIPAddressLeaseTime,
	dhcpv4.OptionRenewTimeValue,
	dhcpv4.OptionRebindingTimeValue,
)

func ipOf(a netip.Addr) net.IP { return net.IP(a.AsSlice()) }
