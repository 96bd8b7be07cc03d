package netconf

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/otgate/otgate/services/netconf/internal/lab"
)

// A renewal the check refuses keeps the lease held: dnsmasq's options
// change under a bound lease to a mask that is not contiguous, the
// renewal's ACK is refused (an event saying the lease held is kept),
// and the address, the default route and the status's lease stay as
// they were, nothing released. Once the server's options are right
// again, the next renewal is taken and extends the same address.
func TestDHCPRefusedRenewalKeepsLease(t *testing.T) {
	l := newDHCPLab(t)
	opts := filepath.Join(l.dir, "dhcp-opts")
	if err := os.WriteFile(opts, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// T1 4 s, T2 12 s: the renewal comes within seconds, and one refused
	// is tried again 4 s later.
	srv := lab.StartDnsmasq(t, l.srv, "srv0", l.dir, "--dhcp-option=option:T1,4", "--dhcp-option=option:T2,12", "--dhcp-optsfile="+opts)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("dnsmasq log:\n%s", srv.LogText())
		}
	})
	ring := NewRing(0, t.Logf)
	c := l.client(ring)
	startClient(t, c)
	got := waitEvent(t, ring, 0, EventLease, 30*time.Second, nil)
	held := c.Status().Lease
	if held == nil {
		t.Fatalf("no lease after %s", got)
	}
	addrs0, gw0 := l.uplinkState(t)
	if len(addrs0) != 1 || gw0 != "10.99.0.1" {
		t.Fatalf("up0 has %v, default route %q after the lease", addrs0, gw0)
	}

	if err := os.WriteFile(opts, []byte("option:netmask,255.0.255.0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	srv.Reload(t)
	ref := waitEvent(t, ring, got.Seq, EventRefused, 15*time.Second, nil)
	if !strings.Contains(ref.Detail, "in renewing") || !strings.Contains(ref.Detail, "subnet mask 255.0.255.0 is not contiguous") ||
		!strings.Contains(ref.Detail, "the lease held is kept") || ref.IP != held.Address.Addr().String() {
		t.Errorf("refused-renewal event: %s", ref)
	}
	if addrs, gw := l.uplinkState(t); len(addrs) != 1 || addrs[0] != addrs0[0] || gw != gw0 {
		t.Errorf("after the refused renewal up0 has %v, default route %q; want %v via %s", addrs, gw, addrs0, gw0)
	}
	st := c.Status()
	if st.Lease == nil || st.Lease.Address != held.Address || !st.Lease.Obtained.Equal(held.Obtained) ||
		st.State != StateRenewing || st.Refusals != 1 || st.Renewals != 0 {
		t.Errorf("status after the refused renewal: %+v (lease %+v), want the held %s in renewing", st, st.Lease, held.Address)
	}
	evs, _ := ring.Since(got.Seq)
	for _, e := range evs {
		if e.Kind != EventRefused {
			t.Errorf("event after the refused renewal: %s", e)
		}
	}
	if strings.Contains(srv.LogText(), "DHCPRELEASE") || strings.Contains(srv.LogText(), "DHCPDECLINE") {
		t.Errorf("the refused renewal was released or declined")
	}

	if err := os.WriteFile(opts, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	srv.Reload(t)
	ren := waitEvent(t, ring, ref.Seq, EventRenewed, 15*time.Second, nil)
	if st := c.Status(); st.Lease == nil || st.Lease.Address != held.Address || !st.Lease.Obtained.After(held.Obtained) || st.State != StateBound {
		t.Errorf("after the renewal %s: %+v", ren, st)
	}
}
