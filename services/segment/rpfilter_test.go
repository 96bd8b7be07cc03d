package segment_test

import (
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/otgate/otgate/services/segment/internal/nslab"
	"github.com/otgate/otgate/services/segment/ruleset"
)

// synAcksOut counts, in a table of the test's own in the gate namespace
// (its output hook runs before the service's), the SYN-ACKs the gate's
// listener port 8443 sends out the first downlink: answers to a SYN that
// claimed an asset's address.
func synAcksOut(t *testing.T, l *nslab.Lab) uint64 {
	t.Helper()
	add := l.Gate.Command("nft", "-f", "-")
	add.Stdin = strings.NewReader(`table inet rpprobe {
	chain out {
		type filter hook output priority -200; policy accept;
		oifname "` + nslab.Downlink + `" tcp sport 8443 tcp flags & (syn | ack) == syn | ack counter
	}
}
`)
	// "add table" with a body: created once, the same rule not added twice
	// (nft -f of a table that exists adds its rule again), so list first.
	list, err := l.Gate.Command("nft", "list", "table", "inet", "rpprobe").CombinedOutput()
	if err != nil {
		if out, err := add.CombinedOutput(); err != nil {
			t.Fatalf("nft: %v\n%s", err, out)
		}
		if list, err = l.Gate.Command("nft", "list", "table", "inet", "rpprobe").CombinedOutput(); err != nil {
			t.Fatalf("nft list: %v\n%s", err, list)
		}
	}
	m := regexp.MustCompile(`counter packets (\d+)`).FindSubmatch(list)
	if m == nil {
		t.Fatalf("no counter in:\n%s", list)
	}
	n, _ := strconv.ParseUint(string(m[1]), 10, 64)
	return n
}

// forgedToListener has the client, on the uplink, take plc-1's address
// (once) and open a connection from it to the gate's listener.
func forgedToListener(t *testing.T, l *nslab.Lab) {
	t.Helper()
	if out, err := l.Client.Command("ip", "addr", "replace", nslab.Asset1+"/32", "dev", "cl0").CombinedOutput(); err != nil {
		t.Fatalf("client takes plc-1's address: %v\n%s", err, out)
	}
	if err := l.Client.Do(func() error {
		d := net.Dialer{Timeout: 1500 * time.Millisecond, LocalAddr: &net.TCPAddr{IP: net.ParseIP(nslab.Asset1)}}
		if c, err := d.Dial("tcp", nslab.GateUplink+":8443"); err == nil {
			c.Close()
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// Strict reverse-path filtering is on whether the gate routes or not (an
// enforce-only site routes nothing): a host on the uplink that claims an
// OT asset's address toward the proxy's listener gets nothing, where the
// gate used to send its SYN-ACK out the asset's downlink (reflection, and
// the answer of a flow the asset never opened); a device on one downlink
// claiming an address of another is dropped the same way. Put in place at
// the start (logged, not drift), checked on every check (drift, set back).
func TestReversePathFilterKeptWithoutForwarding(t *testing.T) {
	l := nslab.New(t)
	l.Gate.Listen(t, nslab.GateUplink+":8443")
	for _, iface := range []string{"all", "default", nslab.Uplink} {
		setRPFilter(t, l, iface, "0")
	}
	// Control: with the filter off the forged SYN is answered toward the
	// asset.
	before := synAcksOut(t, l)
	forgedToListener(t, l)
	if n := synAcksOut(t, l); n == before {
		t.Fatal("control: with rp_filter off no SYN-ACK went out the downlink; the rest proves nothing")
	}

	svc, lg := newService(t, l, labSpec(ruleset.ModeEnforce))
	if err := svc.Start(); err != nil {
		t.Fatal(err)
	}
	if l.Forwarding(t) {
		t.Fatal("forwarding on with an enforce-only spec")
	}
	if rpFilter(t, l, "all") != "1" || rpFilter(t, l, "default") != "1" {
		t.Fatalf("after start: rp_filter all %s default %s; want 1, 1", rpFilter(t, l, "all"), rpFilter(t, l, "default"))
	}
	if got := lg.matching("segment: strict reverse-path filtering turned on (it was not: net.ipv4.conf.all.rp_filter is 0, want 1"); len(got) != 1 {
		t.Errorf("start: %q", lg.matching("segment: "))
	}
	if got := lg.matching("segment: drift"); len(got) != 0 {
		t.Errorf("the start's own set-up logged as drift: %q", got)
	}
	before = synAcksOut(t, l)
	forgedToListener(t, l)
	if n := synAcksOut(t, l); n != before {
		t.Errorf("with the filter on, %d SYN-ACKs went out the downlink to the forged source", n-before)
	}
	// The client from its own address still reaches the listener.
	if ok, err := l.Client.Reach(nslab.GateUplink+":8443", nslab.Identity{}, 5*time.Second); !ok || err != nil {
		t.Errorf("client to the gate's listener: %v %v", ok, err)
	}

	// Turned off behind the service's back: drift, set back at the next
	// check, forwarding still off.
	setRPFilter(t, l, "all", "0")
	if _, err := svc.Check(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"segment: drift: net.ipv4.conf.all.rp_filter is 0, want 1 (strict reverse-path filtering)",
		"segment: forwarding: strict reverse-path filtering set back",
	} {
		if got := lg.matching(want); len(got) != 1 {
			t.Errorf("log has %d lines %q; all: %q", len(got), want, lg.matching("segment: "))
		}
	}
	if rpFilter(t, l, "all") != "1" || l.Forwarding(t) {
		t.Errorf("after the check: rp_filter all %s, forwarding %v; want 1, off", rpFilter(t, l, "all"), l.Forwarding(t))
	}
	before = synAcksOut(t, l)
	forgedToListener(t, l)
	if n := synAcksOut(t, l); n != before {
		t.Errorf("after the repair, %d SYN-ACKs went out the downlink to the forged source", n-before)
	}
	if d := svc.Degraded(); d != nil {
		t.Errorf("Degraded() = %v", d)
	}
}
