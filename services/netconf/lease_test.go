package netconf

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/rfc1035label"
)

func ack(t *testing.T, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	base := []dhcpv4.Modifier{dhcpv4.WithMessageType(dhcpv4.MessageTypeAck), dhcpv4.WithYourIP(net.IPv4(10, 9, 0, 5)),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(10, 9, 0, 1)))}
	m, err := dhcpv4.New(append(base, mods...)...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestLeaseFromACK(t *testing.T) {
	now := time.Now()
	for _, c := range []struct {
		name       string
		mods       []dhcpv4.Modifier
		addr       string
		gw         string
		d, t1, t2  time.Duration
		dns        string
		searchWant string
	}{
		{"defaults from the lease time", []dhcpv4.Modifier{dhcpv4.WithNetmask(net.CIDRMask(24, 32)), dhcpv4.WithLeaseTime(800),
			dhcpv4.WithRouter(net.IPv4(10, 9, 0, 1)), dhcpv4.WithDNS(net.IPv4(10, 9, 0, 53)), dhcpv4.WithOption(dhcpv4.OptDomainName("plant.example"))},
			"10.9.0.5/24", "10.9.0.1", 800 * time.Second, 400 * time.Second, 700 * time.Second, "10.9.0.53", "plant.example"},
		{"server's T1 and T2", []dhcpv4.Modifier{dhcpv4.WithNetmask(net.CIDRMask(16, 32)), dhcpv4.WithLeaseTime(100),
			dhcpv4.WithOption(dhcpv4.OptRenewTimeValue(10 * time.Second)), dhcpv4.WithOption(dhcpv4.OptRebindingTimeValue(20 * time.Second))},
			"10.9.0.5/16", "invalid IP", 100 * time.Second, 10 * time.Second, 20 * time.Second, "", ""},
		{"T1 after T2 and a router off the subnet", []dhcpv4.Modifier{dhcpv4.WithNetmask(net.CIDRMask(24, 32)), dhcpv4.WithLeaseTime(100),
			dhcpv4.WithRouter(net.IPv4(192, 0, 2, 1)),
			dhcpv4.WithOption(dhcpv4.OptRenewTimeValue(90 * time.Second)), dhcpv4.WithOption(dhcpv4.OptRebindingTimeValue(200 * time.Second))},
			"10.9.0.5/24", "invalid IP", 100 * time.Second, 50 * time.Second, 87500 * time.Millisecond, "", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			l := leaseFromACK(ack(t, c.mods...), now)
			var dns []string
			for _, d := range l.DNS {
				dns = append(dns, d.String())
			}
			if l.Address.String() != c.addr || l.Gateway.String() != c.gw || l.Duration != c.d || l.T1 != c.t1 || l.T2 != c.t2 ||
				strings.Join(dns, ",") != c.dns || strings.Join(l.Search, " ") != c.searchWant || l.Server != netip.MustParseAddr("10.9.0.1") {
				t.Errorf("%+v", l)
			}
			if !l.Renew().Before(l.Rebind()) || !l.Rebind().Before(l.Expiry()) {
				t.Errorf("deadlines out of order: %+v", l)
			}
		})
	}
}

// The lease's NTP servers (option 42) are kept for timesync: IPv4
// unicast ones, each once, in the server's order.
func TestLeaseNTPServers(t *testing.T) {
	l := leaseFromACK(ack(t, dhcpv4.WithNetmask(net.CIDRMask(24, 32)), dhcpv4.WithLeaseTime(800),
		dhcpv4.WithOption(dhcpv4.OptNTPServers(net.IPv4(10, 9, 0, 123), net.IPv4(0, 0, 0, 0), net.IPv4(127, 0, 0, 1),
			net.IPv4(224, 0, 1, 1), net.IPv4(10, 9, 0, 123), net.IPv4(192, 0, 2, 7), net.IPv4(255, 255, 255, 255)))), time.Now())
	if got := fmt.Sprint(l.NTP); got != "[10.9.0.123 192.0.2.7]" {
		t.Errorf("NTP servers %s, want [10.9.0.123 192.0.2.7]", got)
	}
	if l := leaseFromACK(ack(t, dhcpv4.WithNetmask(net.CIDRMask(24, 32))), time.Now()); l.NTP != nil {
		t.Errorf("no option 42: NTP %v", l.NTP)
	}
}

func TestResolvContent(t *testing.T) {
	got := string(ResolvContent("dhcp on eth0", []netip.Addr{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"),
		netip.MustParseAddr("10.0.0.3"), netip.MustParseAddr("10.0.0.4")}, []string{"a.example", "b.example"}))
	want := "# written by otgate-netconf (dhcp on eth0)\nsearch a.example b.example\nnameserver 10.0.0.1\nnameserver 10.0.0.2\nnameserver 10.0.0.3\n"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

// A domain name or search list in a lease is written into resolv.conf:
// one that is not a DNS name (a newline, a space, a '#') is dropped, or
// a DHCP reply would write lines of its own into the resolver's file
// (here a nameserver in an OT zone, options).
func TestLeaseSearchOnlyDNSNames(t *testing.T) {
	evil := "plant.example\nnameserver 10.77.0.5\noptions ndots:15"
	l := leaseFromACK(ack(t, dhcpv4.WithNetmask(net.CIDRMask(24, 32)), dhcpv4.WithDNS(net.IPv4(10, 9, 0, 53)),
		dhcpv4.WithOption(dhcpv4.OptDomainName(evil))), time.Now())
	got := string(ResolvContent("dhcp on eth0", l.DNS, l.Search))
	if want := "# written by otgate-netconf (dhcp on eth0)\nnameserver 10.9.0.53\n"; got != want {
		t.Errorf("resolv.conf from a lease whose domain name is %q:\n%s\nwant\n%s", evil, got, want)
	}
	l = leaseFromACK(ack(t, dhcpv4.WithNetmask(net.CIDRMask(24, 32)),
		dhcpv4.WithOption(dhcpv4.OptDomainSearch(&rfc1035label.Labels{Labels: []string{"a.example", "b c.example", "x\n#", "ok-1.b_2.example."}}))), time.Now())
	if got := strings.Join(l.Search, " "); got != "a.example ok-1.b_2.example" {
		t.Errorf("search %q, want the DNS names only: a.example ok-1.b_2.example", got)
	}
}
