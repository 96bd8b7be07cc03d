package main_test

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/otgate/otgate/internal/syncbuf"

	"github.com/otgate/otgate/services/overlay/alloc"
	"github.com/otgate/otgate/services/segment"
	"github.com/otgate/otgate/services/segment/internal/nslab"
	"github.com/otgate/otgate/services/segment/ruleset"
)

var (
	proxy = nslab.Identity{UID: 990, Mark: 0x5a}
	other = nslab.Identity{UID: 1000, Mark: 0x5a}
	root  = nslab.Identity{}
)

func buildBinary(t *testing.T, pkg, name string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), name)
	// Without cgo, as the image builds it (the service limits its
	// capabilities on every thread, which a cgo binary cannot do).
	build := exec.Command("go", "build", "-o", bin, pkg)
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := build.CombinedOutput()
	if err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, out)
	}
	return bin
}

func testSpec(exceptionExpires time.Time) *ruleset.Spec {
	return &ruleset.Spec{
		BaselineSpec: ruleset.BaselineSpec{
			Uplink: nslab.Uplink, Downlinks: []string{nslab.Downlink, nslab.Downlink2},
			ListenPorts: []uint16{8443}, DHCPClient: true, Proxy: ruleset.ProxyIdentity{UID: 990, Mark: 0x5a},
		},
		EnforceInterfaces: []string{nslab.Downlink},
		Assets: []ruleset.Asset{
			{Name: "plc-1", Zone: "cell-a", Mode: ruleset.ModeEnforce, Address: nslab.Asset1, TCPPorts: []uint16{502}, Endpoint: "100.64.0.1"},
			{Name: "rtu-1", Zone: "cell-b", Mode: ruleset.ModeMonitor, Address: nslab.Asset3, TCPPorts: []uint16{502}},
		},
		Exceptions: []ruleset.Exception{{ID: "hist-pull", From: nslab.Asset1, To: nslab.Asset3, Protocol: "tcp", Port: 502,
			Owner: "ops@plant", Expires: exceptionExpires}},
	}
}

// service is one running otgate-segment in the gate namespace.
type service struct {
	cmd *exec.Cmd
	out *syncbuf.Buffer
}

// stateFile is the would-block history file start gives the service.
func stateFile(sock string) string { return filepath.Join(filepath.Dir(sock), "would-block.cbor") }

func start(t *testing.T, l *nslab.Lab, bin, spec, sock, interval string, extra ...string) *service {
	t.Helper()
	state := stateFile(sock)
	cmd := l.Gate.Command(bin, append([]string{"-spec", spec, "-socket", sock, "-interval", interval, "-state", state}, extra...)...)
	out := &syncbuf.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &service{cmd: cmd, out: out}
	t.Cleanup(func() { s.kill() })
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(out.String(), "segment: ready") {
		if time.Now().After(deadline) {
			t.Fatalf("otgate-segment not ready in 30s:\n%s", out)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return s
}

// kill sends SIGKILL to the service (ip netns exec execs it, same pid).
func (s *service) kill() {
	if s.cmd.ProcessState == nil {
		_ = s.cmd.Process.Signal(syscall.SIGKILL)
		_ = s.cmd.Wait()
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after 30s waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The service applies its spec, answers show/report/status, repairs a rule
// deleted with the nft CLI, and removes an exception at expiry with an event.
func TestServiceReconciles(t *testing.T) {
	l := nslab.New(t)
	bin := buildBinary(t, ".", "otgate-segment")
	cli := buildBinary(t, "github.com/otgate/otgate/cmd/otgate", "otgate")
	l.Plant.Listen(t, nslab.Asset1+":502")
	l.Plant2.Listen(t, nslab.Asset3+":502")
	dir := t.TempDir()
	specPath, sock := filepath.Join(dir, "segment.cbor"), filepath.Join(dir, "segment.sock")
	// The exception must outlive the start, show and report below on a
	// loaded machine, and then expire within the test.
	expires := time.Now().Add(10 * time.Second)
	if err := segment.WriteSpec(specPath, testSpec(expires)); err != nil {
		t.Fatal(err)
	}
	// The overlay allocator's table: plc-1 pinned, rtu-1 allocated.
	overlay := filepath.Join(dir, "overlay", "alloc.cbor")
	a, err := alloc.Open(overlay)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Apply(alloc.Config{Gate: netip.MustParseAddr("100.64.255.254")}, []alloc.Request{{Asset: "plc-1", Zone: "cell-a", Pinned: netip.MustParseAddr("100.64.0.1")},
		{Asset: "rtu-1", Zone: "cell-b"}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	rtuEndpoint := ""
	for _, e := range a.Table() {
		if e.Asset == "rtu-1" {
			rtuEndpoint = e.Addr.String()
		}
	}
	svc := start(t, l, bin, specPath, sock, "1h", "-overlay-state", overlay) // drift is found through nftables events

	show, err := exec.Command(cli, "segment", "-socket", sock, "show").CombinedOutput()
	if err != nil {
		t.Fatalf("otgate segment show: %v\n%s", err, show)
	}
	for _, want := range []string{
		"plc-1 (10.20.0.10, zone cell-a, enforce mode, endpoint 100.64.0.1)",
		"rtu-1 (10.30.0.10, zone cell-b, monitor mode, endpoint " + rtuEndpoint + ")", // not pinned: allocated
		"reachable by the proxy (socket uid 990 and mark 0x5a) on tcp/502",
		"reachable by 10.20.0.10 on tcp/502 by exception hist-pull (owner ops@plant",
	} {
		if !strings.Contains(string(show), want) {
			t.Errorf("otgate segment show lacks %q:\n%s", want, show)
		}
	}

	// Monitor mode: the client reaches rtu-1; the report says so.
	if ok, err := l.Client.Reach(nslab.Asset3+":502", root, 10*time.Second); !ok || err != nil {
		t.Fatalf("client to monitored rtu-1: reachable=%v err=%v", ok, err)
	}
	rep, err := exec.Command(cli, "segment", "-socket", sock, "report").CombinedOutput()
	if err != nil || !strings.Contains(string(rep), "10.10.0.2 -> 10.30.0.10 tcp/502") {
		t.Errorf("otgate segment report: %v\n%s", err, rep)
	}

	// Drift: delete the jump to the OT checks; the service puts it back.
	out, err := l.Gate.Command("nft", "-a", "list", "chain", "inet", "otgate", "output").CombinedOutput()
	if err != nil {
		t.Fatal(err, string(out))
	}
	handle := ""
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "otgate:output/to-ot") {
			handle = line[strings.LastIndex(line, " ")+1:]
		}
	}
	if out, err := l.Gate.Command("nft", "delete", "rule", "inet", "otgate", "output", "handle", handle).CombinedOutput(); err != nil {
		t.Fatalf("nft delete rule: %v\n%s", err, out)
	}
	waitFor(t, "drift repair", func() bool {
		return strings.Contains(svc.out.String(), "segment: drift: chain output: rule output/to-ot is missing") &&
			strings.Contains(svc.out.String(), "(drift repair)")
	})
	out, _ = l.Gate.Command("nft", "list", "chain", "inet", "otgate", "output").CombinedOutput()
	if !strings.Contains(string(out), "otgate:output/to-ot") {
		t.Errorf("rule not repaired:\n%s", out)
	}

	// Drift in a set: an element added by hand (plc-1 tcp/503 for the
	// proxy) is found and taken out again.
	l.Plant.Listen(t, nslab.Asset1+":503")
	if out, err := l.Gate.Command("nft", "add", "element", "inet", "otgate", "asset_ports", "{ 10.20.0.10 . 503 }").CombinedOutput(); err != nil {
		t.Fatalf("nft add element: %v\n%s", err, out)
	}
	waitFor(t, "set drift repair", func() bool {
		return strings.Contains(svc.out.String(), "segment: drift: set asset_ports: 0 elements missing, 1 unexpected")
	})
	waitFor(t, "the element gone", func() bool {
		out, _ := l.Gate.Command("nft", "list", "set", "inet", "otgate", "asset_ports").CombinedOutput()
		return !strings.Contains(string(out), "10.20.0.10 . 503")
	})
	if ok, _ := l.Gate.Reach(nslab.Asset1+":503", proxy, 1500*time.Millisecond); ok {
		t.Error("the proxy reaches tcp/503 after the set was repaired")
	}

	// Drift in a verdict map: plc-1 (enforce zone) sent to accept by hand,
	// key unchanged, is found by its verdict and put back.
	if out, err := l.Gate.Command("nft", "delete element inet otgate asset_verdicts { 10.20.0.10 }; add element inet otgate asset_verdicts { 10.20.0.10 : accept }").CombinedOutput(); err != nil {
		t.Fatalf("nft replace map element: %v\n%s", err, out)
	}
	waitFor(t, "verdict map drift repair", func() bool {
		return strings.Contains(svc.out.String(), "segment: drift: map asset_verdicts: element 10.20.0.10 maps to accept, want jump enforce_drop")
	})
	waitFor(t, "the verdict restored", func() bool {
		out, _ := l.Gate.Command("nft", "list", "map", "inet", "otgate", "asset_verdicts").CombinedOutput()
		return strings.Contains(string(out), "10.20.0.10 : jump enforce_drop")
	})
	if ok, _ := l.Gate.Reach(nslab.Asset1+":502", other, 1500*time.Millisecond); ok {
		t.Error("another uid reaches plc-1 after the verdict map was repaired")
	}

	// Exception expiry: an event, and the flow is no longer the
	// exception's. rtu-1's zone monitors, so plc-1 still connects, now as
	// a would-block flow (the exception accepted it before would_block
	// could record it).
	waitFor(t, "exception expiry event", func() bool {
		return strings.Contains(svc.out.String(), "exception-expired: exception hist-pull")
	})
	st, err := segment.Query(sock, segment.OpStatus)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Status.Exceptions) != 0 {
		t.Errorf("exceptions after expiry: %+v", st.Status.Exceptions)
	}
	if ok, err := l.Plant.Reach(nslab.Asset3+":502", root, 10*time.Second); !ok || err != nil {
		t.Errorf("plc-1 to monitored rtu-1 after the exception expired: reachable=%v err=%v", ok, err)
	}
	rep, err = exec.Command(cli, "segment", "-socket", sock, "report").CombinedOutput()
	if err != nil || !strings.Contains(string(rep), "10.20.0.10 -> 10.30.0.10 tcp/502") {
		t.Errorf("otgate segment report after the exception expired lacks plc-1 -> rtu-1: %v\n%s", err, rep)
	}
}

// synCounter counts, in a namespace's prerouting (before anything else
// there sees them), the TCP SYNs that arrive: "proxy" those of the proxy's
// allowed path (from gateAddr to asset:502), "leaked" every other one.
func synCounter(t *testing.T, ns *nslab.NS, gateAddr, asset string) func() (proxy, leaked uint64) {
	t.Helper()
	rules := fmt.Sprintf(`table inet probe {
	counter proxy {}
	counter leaked {}
	chain pre {
		type filter hook prerouting priority -400; policy accept;
		tcp flags & (syn | ack) == syn ip saddr %s ip daddr %s tcp dport 502 counter name "proxy" accept
		tcp flags & (syn | ack) == syn counter name "leaked"
	}
}
`, gateAddr, asset)
	cmd := ns.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft -f (SYN counters in %s): %v\n%s", ns.Name, err, out)
	}
	read := func(name string) uint64 {
		out, err := ns.Command("nft", "list", "counter", "inet", "probe", name).CombinedOutput()
		if err != nil {
			t.Fatalf("nft list counter %s: %v\n%s", name, err, out)
		}
		m := regexp.MustCompile(`packets (\d+)`).FindSubmatch(out)
		if m == nil {
			t.Fatalf("nft list counter %s: no packets in %s", name, out)
		}
		n, _ := strconv.ParseUint(string(m[1]), 10, 64)
		return n
	}
	return func() (uint64, uint64) { return read("proxy"), read("leaked") }
}

// While the service is killed and restarted in a loop, not one packet of
// the forbidden probes reaches an asset (counted by SYN counters in the
// plant namespaces, not by connections), and the proxy's path keeps
// working. An exception of another flow makes the service turn forwarding
// on, so the routed probes test the forward chain, not the sysctl.
func TestKillRestartLoopLeaksNothing(t *testing.T) {
	l := nslab.New(t)
	bin := buildBinary(t, ".", "otgate-segment")
	l.Plant.Listen(t, nslab.Asset1+":502")
	l.Plant.Listen(t, nslab.Asset2+":502")
	l.Plant2.Listen(t, nslab.Asset3+":502")
	plant := synCounter(t, l.Plant, nslab.GateDownlink, nslab.Asset1)
	plant2 := synCounter(t, l.Plant2, "192.0.2.1", nslab.Asset3) // no proxy path into plant2 here
	// The counters see a leak: with no ruleset yet, one SYN from another
	// uid on the gate arrives.
	if ok, err := l.Gate.Reach(nslab.Asset2+":502", other, 10*time.Second); !ok || err != nil {
		t.Fatalf("control probe without a ruleset: reachable=%v err=%v", ok, err)
	}
	if _, leaked0 := plant(); leaked0 == 0 {
		t.Fatal("the SYN counter did not see the control probe; it would miss a leak too")
	}
	dir := t.TempDir()
	specPath, sock := filepath.Join(dir, "segment.cbor"), filepath.Join(dir, "segment.sock")
	spec := testSpec(time.Now().Add(time.Hour))
	spec.Exceptions[0].Port = 503 // routed, but none of the probes' flows
	spec.Assets[1].Mode = ruleset.ModeEnforce
	if err := segment.WriteSpec(specPath, spec); err != nil {
		t.Fatal(err)
	}
	start(t, l, bin, specPath, sock, "200ms").kill() // first install, then the loop
	if !l.Forwarding(t) {
		t.Fatal("the service did not turn forwarding on for the exception")
	}
	proxyBefore, leakedBefore := plant()
	_, leaked2Before := plant2()

	var leaked, refused, proxyOK, proxyFail atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	prober := func(from *nslab.NS, id nslab.Identity, to string, mustPass bool) {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			timeout := 500 * time.Millisecond
			if mustPass {
				timeout = 10 * time.Second
			}
			ok, err := from.Reach(to, id, timeout)
			switch {
			case err != nil:
				t.Errorf("probe %s -> %s: %v", from.Name, to, err)
				return
			case mustPass && ok:
				proxyOK.Add(1)
			case mustPass:
				proxyFail.Add(1)
			case ok:
				leaked.Add(1)
			default:
				refused.Add(1)
			}
		}
	}
	// Three probers per forbidden path (each probe waits 500 ms for a
	// dropped SYN), one on the proxy's allowed path. The gate's other uid
	// probes plc-2, so that every SYN from the gate to plc-1 is the proxy's.
	for i := 0; i < 3; i++ {
		wg.Add(4)
		go prober(l.Gate, other, nslab.Asset2+":502", false)
		go prober(l.Gate, root, nslab.Asset3+":502", false)
		go prober(l.Client, root, nslab.Asset1+":502", false)
		go prober(l.Plant, root, nslab.Asset3+":502", false)
	}
	wg.Add(1)
	go prober(l.Gate, proxy, nslab.Asset1+":502", true)

	restarts := 0
	for end := time.Now().Add(8 * time.Second); time.Now().Before(end); restarts++ {
		s := start(t, l, bin, specPath, sock, "200ms")
		time.Sleep(time.Duration(restarts%5) * 40 * time.Millisecond)
		s.kill()
	}
	close(stop)
	wg.Wait()
	proxyAfter, leakedAfter := plant()
	_, leaked2After := plant2()
	synLeaks := (leakedAfter - leakedBefore) + (leaked2After - leaked2Before)
	t.Logf("%d restarts; %d probes refused, %d connected; SYNs at the assets: %d leaked, %d of the proxy; proxy path %d ok, %d failed",
		restarts, refused.Load(), leaked.Load(), synLeaks, proxyAfter-proxyBefore, proxyOK.Load(), proxyFail.Load())
	if synLeaks != 0 {
		t.Errorf("%d SYNs of forbidden probes reached the plant during the kill/restart loop (%d in plant, %d in plant2)",
			synLeaks, leakedAfter-leakedBefore, leaked2After-leaked2Before)
	}
	if leaked.Load() != 0 {
		t.Errorf("%d probes connected during the kill/restart loop", leaked.Load())
	}
	if refused.Load() == 0 || proxyOK.Load() == 0 || proxyAfter == proxyBefore {
		t.Errorf("probes did not run: refused %d, proxy ok %d, proxy SYNs %d", refused.Load(), proxyOK.Load(), proxyAfter-proxyBefore)
	}
	if proxyFail.Load() != 0 {
		t.Errorf("proxy path failed %d times during restarts (an apply must not disturb allowed flows)", proxyFail.Load())
	}
	_ = os.Remove(sock)
}

// The service owns the gate's IPv4 forwarding: in a namespace where
// nothing else turned it on, an exception works because the service turns
// forwarding on (after its ruleset is in), and at the exception's expiry
// the service turns it off again; someone else turning it on is undone.
func TestServiceOwnsForwarding(t *testing.T) {
	l := nslab.New(t)
	bin := buildBinary(t, ".", "otgate-segment")
	l.Plant2.Listen(t, nslab.Asset3+":502")
	l.Plant.Listen(t, nslab.Asset1+":502")
	if l.Forwarding(t) {
		t.Fatal("lab gate starts with forwarding on")
	}
	dir := t.TempDir()
	specPath, sock := filepath.Join(dir, "segment.cbor"), filepath.Join(dir, "segment.sock")
	// Long enough for the start and both reach checks on a loaded
	// machine; its expiry is waited for below.
	spec := testSpec(time.Now().Add(8 * time.Second))
	spec.Assets[1].Mode = ruleset.ModeEnforce // the exception is the only routed flow
	if err := segment.WriteSpec(specPath, spec); err != nil {
		t.Fatal(err)
	}
	svc := start(t, l, bin, specPath, sock, "200ms")
	out := svc.out.String()
	on := strings.Index(out, "segment: IPv4 forwarding on: 1 exceptions, 0 monitor zones")
	if applied := strings.Index(out, "segment: applied: "); on < 0 || applied < 0 || on < applied {
		t.Fatalf("want the apply, then forwarding on:\n%s", out)
	}
	if !l.Forwarding(t) {
		t.Fatal("forwarding off with an active exception")
	}
	if ok, err := l.Plant.Reach(nslab.Asset3+":502", root, 10*time.Second); !ok || err != nil {
		t.Fatalf("the exception's flow: reachable=%v err=%v\n%s", ok, err, svc.out)
	}
	if ok, _ := l.Client.Reach(nslab.Asset1+":502", root, 1500*time.Millisecond); ok {
		t.Error("with forwarding on, the uplink reaches plc-1 through the gate")
	}
	waitFor(t, "forwarding off at expiry", func() bool {
		return strings.Contains(svc.out.String(), "segment: IPv4 forwarding off: 0 exceptions, 0 monitor zones")
	})
	if l.Forwarding(t) {
		t.Error("forwarding still on after the exception expired")
	}
	st, err := segment.Query(sock, segment.OpStatus)
	if err != nil {
		t.Fatal(err)
	}
	if st.Status.Forwarding != "off" || st.Status.Degraded != "" {
		t.Errorf("status: forwarding %q, degraded %q", st.Status.Forwarding, st.Status.Degraded)
	}
	l.SetForwarding(t, true) // someone else
	waitFor(t, "forwarding put back off", func() bool { return !l.Forwarding(t) })
}

// The would-block report survives restarts without counting anything twice.
func TestReportSurvivesRestarts(t *testing.T) {
	l := nslab.New(t)
	bin := buildBinary(t, ".", "otgate-segment")
	l.Plant2.Listen(t, nslab.Asset3+":502")
	dir := t.TempDir()
	specPath, sock := filepath.Join(dir, "segment.cbor"), filepath.Join(dir, "segment.sock")
	if err := segment.WriteSpec(specPath, testSpec(time.Now().Add(-time.Hour))); err != nil {
		t.Fatal(err)
	}
	report := func() ruleset.WouldBlock {
		t.Helper()
		r, err := segment.Query(sock, segment.OpReport)
		if err != nil {
			t.Fatal(err)
		}
		for _, wb := range r.Report {
			if wb.Flow.String() == "10.10.0.2 -> 10.30.0.10 tcp/502" {
				return wb
			}
		}
		t.Fatalf("report lacks the client flow: %+v", r.Report)
		return ruleset.WouldBlock{}
	}
	connect := func() {
		t.Helper()
		if ok, err := l.Client.Reach(nslab.Asset3+":502", root, 10*time.Second); !ok || err != nil {
			t.Fatalf("client to monitored rtu-1: reachable=%v err=%v", ok, err)
		}
	}

	s := start(t, l, bin, specPath, sock, "200ms")
	connect()
	// Wait until the connection's last packets (FIN, ACK) are counted.
	first := report()
	for stable := 0; stable < 3; {
		time.Sleep(100 * time.Millisecond)
		if next := report(); next.Packets == first.Packets {
			stable++
		} else {
			first, stable = next, 0
		}
	}
	s.kill()
	s = start(t, l, bin, specPath, sock, "200ms")
	if got := report(); got.Packets != first.Packets || !got.FirstSeen.Equal(first.FirstSeen) {
		t.Errorf("after one restart: %+v, want %+v", got, first)
	}
	s.kill()
	statePath := stateFile(sock)
	before := statFile(t, statePath)
	s = start(t, l, bin, specPath, sock, "200ms")
	if got := report(); got.Packets != first.Packets {
		t.Errorf("after two restarts: %d packets, want %d", got.Packets, first.Packets)
	}
	// Nothing new since the last start: the history file is not written
	// again (a write replaces it: a new inode).
	if after := statFile(t, statePath); after.Ino != before.Ino || after.Mtim != before.Mtim {
		t.Errorf("%s rewritten by a restart that saw no new flow (inode %d -> %d)", statePath, before.Ino, after.Ino)
	}
	connect()
	got := report()
	if got.Packets <= first.Packets || !got.FirstSeen.Equal(first.FirstSeen) || !got.LastSeen.After(first.LastSeen) {
		t.Errorf("after more traffic: %+v, want more packets than %d, same first seen, later last seen", got, first.Packets)
	}
	if after := statFile(t, statePath); after.Ino == before.Ino {
		t.Errorf("%s not written after new would-block traffic", statePath)
	}
	s.kill()
}

func statFile(t *testing.T, path string) syscall.Stat_t {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st
}
