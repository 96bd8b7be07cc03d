package main

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/otgate/otgate/services/netconf"
)

// otgate netconf status shows the lease's NTP servers (what timesync uses
// when the site file names none), and no line for a lease without them.
func TestNetconfStatusShowsLeaseNTP(t *testing.T) {
	lease := &netconf.Lease{
		Address: netip.MustParsePrefix("10.9.0.5/24"), Server: netip.MustParseAddr("10.9.0.1"),
		Obtained: time.Now(), Duration: time.Hour, T1: 30 * time.Minute, T2: 50 * time.Minute,
		NTP: []netip.Addr{netip.MustParseAddr("10.9.0.123"), netip.MustParseAddr("10.9.0.124")},
	}
	st := &netconf.Status{Uplink: netconf.UplinkStatus{Name: "eth0", Mode: "dhcp", State: "bound",
		DHCP: &netconf.DHCPStatus{State: netconf.StateBound, Lease: lease}}}
	var out bytes.Buffer
	printNetconfStatus(&out, st)
	if !strings.Contains(out.String(), "\n  lease NTP servers: 10.9.0.123, 10.9.0.124\n") {
		t.Errorf("status without the lease's NTP servers:\n%s", out.String())
	}
	lease.NTP = nil
	out.Reset()
	printNetconfStatus(&out, st)
	if strings.Contains(out.String(), "NTP") {
		t.Errorf("a lease without NTP servers shows a line:\n%s", out.String())
	}
}

// otgate netconf status shows what the uplink does not use, a lease's
// DNS servers and a static uplink's on the OT side (the status's
// lease.not_used and uplink.not_used, in the service's words as its
// tests pin them), one line each; only -json showed them before.
func TestNetconfStatusShowsDNSNotUsed(t *testing.T) {
	lease := &netconf.Lease{
		Address: netip.MustParsePrefix("10.99.0.120/24"), Server: netip.MustParseAddr("10.99.0.1"),
		Obtained: time.Now(), Duration: time.Hour, T1: 30 * time.Minute, T2: 50 * time.Minute,
		DNS: []netip.Addr{netip.MustParseAddr("10.50.0.53")},
		NotUsed: []string{
			`DNS server 10.77.0.53 of the lease is in zone "cell-1" subnet 10.77.0.0/24: not used (the gate resolves names on the uplink side only)`,
			`DNS server 100.64.0.53 of the lease is in the overlay prefix 100.64.0.0/16: not used (the gate resolves names on the uplink side only)`,
		},
	}
	dhcp := &netconf.Status{Uplink: netconf.UplinkStatus{Name: "up0", Mode: "dhcp", State: "bound",
		DHCP: &netconf.DHCPStatus{State: netconf.StateBound, Lease: lease}}}
	static := &netconf.Status{Uplink: netconf.UplinkStatus{Name: "up0", Mode: "static", State: "configured", Address: "10.99.0.5/24",
		NotUsed: []string{
			`DNS server 10.77.0.53 of the static uplink is in zone "cell-1" subnet 10.77.0.0/24: not used (the gate resolves names on the uplink side only)`,
			"no DNS server of the static uplink is left: resolv.conf names none",
		}}}
	for _, c := range []struct {
		name string
		st   *netconf.Status
		want []string
	}{
		{"lease", dhcp, []string{
			`  not used: DNS server 10.77.0.53 of the lease is in zone "cell-1" subnet 10.77.0.0/24 (the gate resolves names on the uplink side only)` + "\n",
			`  not used: DNS server 100.64.0.53 of the lease is in the overlay prefix 100.64.0.0/16 (the gate resolves names on the uplink side only)` + "\n",
		}},
		{"static", static, []string{
			`  not used: DNS server 10.77.0.53 of the static uplink is in zone "cell-1" subnet 10.77.0.0/24 (the gate resolves names on the uplink side only)` + "\n",
			"  not used: no DNS server of the static uplink is left: resolv.conf names none\n",
		}},
	} {
		var out bytes.Buffer
		printNetconfStatus(&out, c.st)
		for _, w := range c.want {
			if !strings.Contains(out.String(), w) {
				t.Errorf("%s: no line %q in:\n%s", c.name, w, out.String())
			}
		}
	}
	// Nothing left out: no line.
	lease.NotUsed = nil
	var out bytes.Buffer
	printNetconfStatus(&out, dhcp)
	if strings.Contains(out.String(), "not used") {
		t.Errorf("a lease whose DNS servers are all used shows a line:\n%s", out.String())
	}
}
