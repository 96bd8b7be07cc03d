package ruleset_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/otgate/otgate/services/segment/internal/nslab"
	"github.com/otgate/otgate/services/segment/ruleset"
)

// echoPort is the monitor-zone asset's echo service in these tests.
const echoPort = "7"

// echoServer serves addr in ns: every connection echoes what it reads. The
// server's end of each accepted connection is sent on the returned
// channel, so a test can also write on it unasked (a reply-direction
// packet the client did not prompt).
func echoServer(t *testing.T, ns *nslab.NS, addr string) <-chan net.Conn {
	t.Helper()
	conns := make(chan net.Conn, 4)
	ns.Serve(t, addr, func(c net.Conn) {
		conns <- c
		_, _ = io.Copy(c, c)
	})
	return conns
}

// exchange writes n random bytes on c and reads them back (echoed) within
// timeout.
func exchange(c net.Conn, n int, timeout time.Duration) error {
	out := make([]byte, n)
	if _, err := rand.Read(out); err != nil {
		return err
	}
	if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	defer c.SetDeadline(time.Time{})
	werr := make(chan error, 1)
	go func() { _, err := c.Write(out); werr <- err }()
	in := make([]byte, n)
	if _, err := io.ReadFull(c, in); err != nil {
		return err
	}
	if err := <-werr; err != nil {
		return err
	}
	if !bytes.Equal(in, out) {
		return errors.New("echoed bytes differ")
	}
	return nil
}

// readWithin reads exactly len(want) bytes from c within timeout: nil when
// they arrived and are want, os.ErrDeadlineExceeded when nothing arrived.
func readWithin(c net.Conn, want []byte, timeout time.Duration) error {
	if err := c.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	defer c.SetReadDeadline(time.Time{})
	got := make([]byte, len(want))
	n, err := io.ReadFull(c, got)
	if err != nil {
		if n > 0 {
			return errors.New("read " + string(got[:n]) + " and then: " + err.Error())
		}
		return err
	}
	if !bytes.Equal(got, want) {
		return errors.New("read " + string(got) + ", want " + string(want))
	}
	return nil
}

// wouldBlockFlows reads the kernel's would-block record by flow.
func wouldBlockFlows(t *testing.T, l *nslab.Lab) map[string]ruleset.WouldBlock {
	t.Helper()
	rep, err := ruleset.ReadWouldBlock(gateConn(t, l), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]ruleset.WouldBlock{}
	for _, r := range rep {
		out[r.Flow.String()] = r
	}
	return out
}

// enforceDrops is the packet count of enforce_drop's counter (what the
// enforce zones dropped, forward and to_ot).
func enforceDrops(t *testing.T, l *nslab.Lab) uint64 {
	t.Helper()
	for _, o := range nftJSON(t, l) {
		r, ok := o["rule"].(map[string]any)
		if !ok || r["table"] != "otgate" || r["chain"] != "enforce_drop" {
			continue
		}
		exprs, _ := r["expr"].([]any)
		for _, e := range exprs {
			if c, ok := e.(map[string]any)["counter"].(map[string]any); ok {
				n, _ := c["packets"].(float64)
				return uint64(n)
			}
		}
	}
	t.Fatal("no counter in chain enforce_drop")
	return 0
}

// A flow from an enforce-zone asset to a monitor-zone asset is one monitor
// mode lets through and records: its replies must come back, or the flow
// fails where enforce mode is not even in force (the forward chain sends a
// packet toward an enforce-zone asset to enforce_drop, and the reply's
// destination is one). The connection completes and carries data both
// ways, also data the monitor-zone asset sends unasked; it is recorded
// once, in its original direction. Nothing else opens: the monitor-zone
// asset still cannot open a connection of its own to the enforce-zone
// asset, nor can anything else reach the enforce zone, while that
// connection is open.
func TestMonitorZoneAnswersEnforceZone(t *testing.T) {
	l := nslab.New(t)
	l.SetForwarding(t, true) // the segment service would: the spec routes (a monitor zone)
	listenAll(t, l)
	l.Client.Listen(t, nslab.Client+":8080")
	served := echoServer(t, l.Plant2, nslab.Asset3+":"+echoPort)
	conn := gateConn(t, l)
	// plc-1, hmi-1 in enforce zone cell-a; rtu-1 in monitor zone cell-b.
	if _, err := ruleset.Apply(conn, threeAssets(ruleset.ModeMonitor), time.Now()); err != nil {
		t.Fatal(err)
	}

	c, err := l.Plant.Dial(nslab.Asset3+":"+echoPort, root, mustPass)
	if err != nil {
		t.Fatalf("plc-1 (enforce zone) to rtu-1 (monitor zone) tcp/%s: %v; monitor mode must let the flow and its replies through", echoPort, err)
	}
	defer c.Close()
	if err := exchange(c, 256<<10, mustPass); err != nil {
		t.Fatalf("256 KiB echoed over plc-1 -> rtu-1: %v", err)
	}
	srv := <-served
	if _, err := srv.Write([]byte("unasked")); err != nil {
		t.Fatal(err)
	}
	if err := readWithin(c, []byte("unasked"), mustPass); err != nil {
		t.Fatalf("rtu-1 writing unasked on plc-1's connection: %v", err)
	}

	flows := wouldBlockFlows(t, l)
	f, ok := flows["10.20.0.10 -> 10.30.0.10 tcp/"+echoPort]
	if !ok {
		t.Fatalf("report lacks plc-1 -> rtu-1 tcp/%s: %v", echoPort, flows)
	}
	if f.Bytes < 256<<10 {
		t.Errorf("plc-1 -> rtu-1 counted %d packets, %d bytes; want at least the 256 KiB sent", f.Packets, f.Bytes)
	}
	for k := range flows {
		if strings.HasPrefix(k, "10.30.0.10 -> 10.20.0.10 ") {
			t.Errorf("report holds %s: a reply direction recorded as a flow", k)
		}
	}

	before := enforceDrops(t, l)
	check(t, []probe{
		{"rtu-1 (monitor zone) opening its own connection to plc-1 (enforce zone)", l.Plant2, root, nslab.Asset1 + ":502", false},
		{"client to plc-1", l.Client, root, nslab.Asset1 + ":502", false},
		{"plc-1 to the client (no asset)", l.Plant, root, nslab.Client + ":8080", false},
	})
	if after := enforceDrops(t, l); after <= before {
		t.Errorf("enforce_drop counted %d packets before the probes and %d after; want the SYNs toward plc-1 counted there", before, after)
	}
	if err := exchange(c, 4<<10, mustPass); err != nil {
		t.Errorf("plc-1 -> rtu-1 after the probes: %v", err)
	}
}

// The replies let through end when the replying asset's zone stops
// monitoring: rtu-1's zone switched to enforce, rtu-1 can no longer send
// on plc-1's open connection (conntrack still has the connection, and its
// mark).
func TestMonitorRepliesEndWithTheZone(t *testing.T) {
	l := nslab.New(t)
	l.SetForwarding(t, true)
	served := echoServer(t, l.Plant2, nslab.Asset3+":"+echoPort)
	conn := gateConn(t, l)
	if _, err := ruleset.Apply(conn, threeAssets(ruleset.ModeMonitor), time.Now()); err != nil {
		t.Fatal(err)
	}
	c, err := l.Plant.Dial(nslab.Asset3+":"+echoPort, root, mustPass)
	if err != nil {
		t.Fatalf("plc-1 to monitored rtu-1: %v", err)
	}
	defer c.Close()
	if err := exchange(c, 1024, mustPass); err != nil {
		t.Fatalf("plc-1 -> monitored rtu-1: %v", err)
	}
	srv := <-served
	if _, err := ruleset.Apply(conn, threeAssets(ruleset.ModeEnforce), time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Write([]byte("late")); err != nil {
		t.Fatal(err)
	}
	if err := readWithin(c, []byte("late"), mustFail); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("rtu-1, its zone enforcing now, writing on plc-1's open connection: %v; want nothing to arrive", err)
	}
}

// The replies let through are those of a flow the would-block path itself
// admitted (its conntrack mark): on a connection opened under an exception
// that then ended, rtu-1's zone monitoring, rtu-1's packets are dropped
// until plc-1 sends on it (the would-block path admits and records that);
// then they pass.
func TestMonitorRepliesOnlyOfAdmittedFlows(t *testing.T) {
	l := nslab.New(t)
	l.SetForwarding(t, true)
	served := echoServer(t, l.Plant2, nslab.Asset3+":"+echoPort)
	conn := gateConn(t, l)
	spec := threeAssets(ruleset.ModeEnforce)
	spec.Exceptions = []ruleset.Exception{{ID: "echo", From: nslab.Asset1, To: nslab.Asset3, Protocol: "tcp", Port: 7,
		Owner: "ops", Expires: time.Now().Add(time.Hour)}}
	if _, err := ruleset.Apply(conn, spec, time.Now()); err != nil {
		t.Fatal(err)
	}
	c, err := l.Plant.Dial(nslab.Asset3+":"+echoPort, root, mustPass)
	if err != nil {
		t.Fatalf("plc-1 to rtu-1 under the exception: %v", err)
	}
	defer c.Close()
	if err := exchange(c, 1024, mustPass); err != nil {
		t.Fatalf("plc-1 -> rtu-1 under the exception: %v", err)
	}
	srv := <-served
	// No exception; rtu-1's zone monitors.
	if _, err := ruleset.Apply(conn, threeAssets(ruleset.ModeMonitor), time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Write([]byte("before")); err != nil {
		t.Fatal(err)
	}
	if err := readWithin(c, []byte("before"), mustFail); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("rtu-1 writing on a connection the would-block path never admitted: %v; want nothing to arrive yet", err)
	}
	if flows := wouldBlockFlows(t, l); len(flows) != 0 {
		t.Errorf("would-block record before plc-1 sent anything: %v", flows)
	}
	if _, err := c.Write([]byte("x")); err != nil { // admitted and recorded now
		t.Fatal(err)
	}
	// rtu-1's TCP sends "before" again (retransmission), then echoes "x".
	if err := readWithin(c, []byte("beforex"), mustPass); err != nil {
		t.Errorf("rtu-1 on the connection once plc-1's packet was admitted: %v", err)
	}
	if _, ok := wouldBlockFlows(t, l)["10.20.0.10 -> 10.30.0.10 tcp/"+echoPort]; !ok {
		t.Error("plc-1 -> rtu-1 not recorded after plc-1's packet")
	}
}
