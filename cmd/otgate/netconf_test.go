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
