package segment_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/otgate/otgate/services/overlay/alloc"
	"github.com/otgate/otgate/services/segment"
	"github.com/otgate/otgate/services/segment/internal/nslab"
	"github.com/otgate/otgate/services/segment/ruleset"
)

// The service runs in this process; its nftables connection and its
// forwarding switch point into the lab's gate namespace (never the test
// host's own).

// nsForwarding is the gate namespace's forwarding switch: the sysctl opened
// from a thread inside the namespace.
type nsForwarding struct{ ns *nslab.NS }

func (f nsForwarding) Get() (on bool, err error) {
	err = f.ns.Do(func() (e error) { on, e = segment.SysctlForwarding{}.Get(); return e })
	return on, err
}

func (f nsForwarding) Set(on bool) error {
	return f.ns.Do(func() error { return segment.SysctlForwarding{}.Set(on) })
}

func (f nsForwarding) Strict() error {
	return f.ns.Do(func() error { return segment.SysctlForwarding{}.Strict() })
}

func (f nsForwarding) Drift() (drift []string) {
	_ = f.ns.Do(func() error { drift = segment.SysctlForwarding{}.Drift(); return nil })
	return drift
}

// logs collects the service's log lines.
type logs struct {
	mu    sync.Mutex
	lines []string
}

func (l *logs) logf(format string, a ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, a...))
}

func (l *logs) matching(prefix string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, s := range l.lines {
		if strings.HasPrefix(s, prefix) {
			out = append(out, s)
		}
	}
	return out
}

func labSpec(mode3 string) *ruleset.Spec {
	enforceIfs := []string{nslab.Downlink}
	if mode3 == ruleset.ModeEnforce {
		enforceIfs = append(enforceIfs, nslab.Downlink2)
	}
	return &ruleset.Spec{
		BaselineSpec: ruleset.BaselineSpec{
			Uplink: nslab.Uplink, Downlinks: []string{nslab.Downlink, nslab.Downlink2},
			ListenPorts: []uint16{8443}, Proxy: ruleset.ProxyIdentity{UID: 990, Mark: 0x5a},
		},
		EnforceInterfaces: enforceIfs,
		Assets: []ruleset.Asset{
			{Name: "plc-1", Zone: "cell-a", Mode: ruleset.ModeEnforce, Address: nslab.Asset1, TCPPorts: []uint16{502}},
			{Name: "rtu-1", Zone: "cell-b", Mode: mode3, Address: nslab.Asset3, TCPPorts: []uint16{502}},
		},
	}
}

func newService(t *testing.T, l *nslab.Lab, spec *ruleset.Spec, opts ...segment.Option) (*segment.Service, *logs) {
	t.Helper()
	f := l.Gate.Open(t)
	conn, err := ruleset.NewConn(int(f.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	lg := &logs{}
	opts = append([]segment.Option{segment.WithLogf(lg.logf), segment.WithForwarding(nsForwarding{l.Gate})}, opts...)
	return segment.New(conn, spec, opts...), lg
}

// Fail closed: when the forwarding switch cannot be set, the ruleset is
// still applied, forwarding stays off (the routed flows stop, nothing
// else opens), and the service says it is degraded: in Degraded, in its
// status, as an error event, and as an error from every check (Run turns
// that into "unhealthy" for init).
func TestForwardingFailureIsDegraded(t *testing.T) {
	l := nslab.New(t)
	spec := labSpec(ruleset.ModeEnforce)
	spec.Exceptions = []ruleset.Exception{{ID: "hist-pull", From: nslab.Asset1, To: nslab.Asset3, Protocol: "tcp", Port: 502,
		Owner: "ops@plant", Expires: time.Now().Add(time.Hour)}}
	broken := segment.SysctlForwarding{Path: filepath.Join(t.TempDir(), "no-such-dir", "ip_forward")}
	svc, lg := newService(t, l, spec, segment.WithForwarding(broken))
	if err := svc.Start(); err != nil {
		t.Fatalf("Start: %v (the ruleset must be applied even when forwarding cannot be set)", err)
	}
	if err := svc.Degraded(); err == nil || !strings.Contains(err.Error(), "set IPv4 forwarding on (1 exceptions, 0 monitor zones)") {
		t.Errorf("Degraded() = %v, want the failed forwarding change", err)
	}
	st, err := svc.Status()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(st.Degraded, "set IPv4 forwarding on") || !strings.HasPrefix(st.Forwarding, "unknown") {
		t.Errorf("status: degraded %q, forwarding %q", st.Degraded, st.Forwarding)
	}
	if len(lg.matching("segment: error: set IPv4 forwarding on")) != 1 {
		t.Errorf("no error logged for the failed forwarding change: %q", lg.matching("segment: "))
	}
	if _, err := svc.Check(); err == nil {
		t.Error("Check() = nil while forwarding cannot be set; want an error (unhealthy)")
	}
	if len(lg.matching("segment: error: set IPv4 forwarding on")) != 1 {
		t.Errorf("the same failure logged as a new error on every check: %q", lg.matching("segment: error"))
	}
	// The service has no other way to the switch than the one it was
	// given: the namespace's forwarding stays off and the routed flow stops.
	if l.Forwarding(t) {
		t.Error("gate forwarding is on")
	}
	if ok, _ := l.Plant.Reach(nslab.Asset3+":502", nslab.Identity{}, 1500*time.Millisecond); ok {
		t.Error("the exception flow passes with forwarding not set")
	}
}

// The service turns forwarding on only with a routed spec, re-evaluates
// it on every apply and check, and puts it back when someone else flips it.
func TestForwardingFollowsTheSpec(t *testing.T) {
	l := nslab.New(t)
	l.Plant2.Listen(t, nslab.Asset3+":502")
	svc, lg := newService(t, l, labSpec(ruleset.ModeEnforce))
	if err := svc.Start(); err != nil {
		t.Fatal(err)
	}
	if l.Forwarding(t) {
		t.Fatal("forwarding on with an enforce-only spec")
	}
	if got := lg.matching("segment: IPv4 forwarding"); len(got) != 1 || got[0] != "segment: IPv4 forwarding off: 0 exceptions, 0 monitor zones" {
		t.Errorf("forwarding lines %q", got)
	}
	if err := svc.SetSpec(labSpec(ruleset.ModeMonitor), "test"); err != nil {
		t.Fatal(err)
	}
	if !l.Forwarding(t) {
		t.Fatal("forwarding off with a monitor zone")
	}
	if got := lg.matching("segment: IPv4 forwarding on"); len(got) != 1 || got[0] != "segment: IPv4 forwarding on: 0 exceptions, 1 monitor zones" {
		t.Errorf("forwarding on lines %q", got)
	}
	if ok, err := l.Client.Reach(nslab.Asset3+":502", nslab.Identity{}, 10*time.Second); !ok || err != nil {
		t.Errorf("client to the monitored asset: %v %v", ok, err)
	}
	l.SetForwarding(t, false) // someone else
	if _, err := svc.Check(); err != nil {
		t.Fatal(err)
	}
	if !l.Forwarding(t) {
		t.Error("a check did not put forwarding back on")
	}
	if err := svc.SetSpec(labSpec(ruleset.ModeEnforce), "test"); err != nil {
		t.Fatal(err)
	}
	if l.Forwarding(t) {
		t.Error("forwarding still on after the monitor zone left")
	}
	if d := svc.Degraded(); d != nil {
		t.Errorf("Degraded() = %v", d)
	}
}

// Each new would-block flow is logged once, when a poll first sees it,
// naming its monitor zone; one poll logs at most 20 such lines and counts
// the rest.
func TestWouldBlockFlowsLoggedOnceRateLimited(t *testing.T) {
	l := nslab.New(t)
	l.Plant2.Listen(t, nslab.Asset3+":502")
	svc, lg := newService(t, l, labSpec(ruleset.ModeMonitor))
	if err := svc.Start(); err != nil {
		t.Fatal(err)
	}
	other := nslab.Identity{UID: 1000}
	probe := func(from *nslab.NS, port int) {
		t.Helper()
		// Closed ports answer with a reset: refused is fine, the SYN was seen.
		if _, err := from.Reach(fmt.Sprintf("%s:%d", nslab.Asset3, port), other, 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	probe(l.Client, 502) // forwarded toward the zone
	for p := 1000; p < 1025; p++ {
		probe(l.Gate, p) // the gate's own non-proxy sockets toward the zone
	}
	if _, err := svc.Report(); err != nil {
		t.Fatal(err)
	}
	lines := lg.matching("segment: would block (monitor zone cell-b): ")
	if len(lines) != 20 {
		t.Errorf("%d would-block lines, want 20 (the cap):\n%s", len(lines), strings.Join(lines, "\n"))
	}
	if want := "segment: would block (monitor zone cell-b): 10.10.0.2 -> 10.30.0.10 tcp/502"; len(lines) == 0 || lines[0] != want {
		t.Errorf("first line %q, want %q", lines, want)
	}
	if more := lg.matching("segment: would block: "); len(more) != 1 || !strings.HasPrefix(more[0], "segment: would block: 6 more new flows not logged") {
		t.Errorf("suppressed count lines %q, want 6 more", more)
	}
	// Seen again: no new line. A new flow: one line.
	probe(l.Client, 502)
	probe(l.Gate, 1000)
	probe(l.Gate, 2000)
	if _, err := svc.Report(); err != nil {
		t.Fatal(err)
	}
	lines = lg.matching("segment: would block (monitor zone cell-b): ")
	if len(lines) != 21 || lines[20] != "segment: would block (monitor zone cell-b): 10.30.0.1 -> 10.30.0.10 tcp/2000" {
		t.Errorf("after more traffic: %d lines, last %q; want one more for tcp/2000", len(lines), lines[len(lines)-1])
	}
}

// show reads the spec under the service's lock (go test -race finds the
// unlocked read racing a policy reload).
func TestShowWhileSpecChanges(t *testing.T) {
	l := nslab.New(t)
	svc, _ := newService(t, l, labSpec(ruleset.ModeEnforce))
	if err := svc.Start(); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "segment.sock")
	ln, err := segment.ListenSocket(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() { _ = svc.Serve(ln) }()
	done := make(chan error, 1)
	go func() {
		for i := 0; i < 20; i++ {
			mode := ruleset.ModeEnforce
			if i%2 == 0 {
				mode = ruleset.ModeMonitor
			}
			if err := svc.SetSpec(labSpec(mode), "test"); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	for running := true; running; {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			running = false
		default:
		}
		r, err := segment.Query(sock, segment.OpShow)
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Show) != 2 {
			t.Fatalf("show: %+v", r.Show)
		}
	}
}

// show takes an unpinned asset's endpoint from the overlay allocator's
// table, reading it without touching the overlay's directory.
func TestShowAllocatedEndpoint(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "alloc.cbor")
	a, err := alloc.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	pin := netip.MustParseAddr("100.64.9.9")
	if _, err := a.Apply(alloc.Config{}, []alloc.Request{{Asset: "plc-1", Zone: "cell-a", Pinned: pin}, {Asset: "rtu-1", Zone: "cell-b"}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	var rtu string
	for _, e := range a.Table() {
		if e.Asset == "rtu-1" {
			rtu = e.Addr.String()
		}
	}
	// A temporary file the overlay service may be writing right now: a
	// reader must leave it alone.
	busy := filepath.Join(dir, ".tmp-alloc.cbor-123")
	if err := os.WriteFile(busy, []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(path)

	eps, err := segment.ReadOverlayEndpoints(path)
	if err != nil {
		t.Fatal(err)
	}
	spec := labSpec(ruleset.ModeEnforce)
	spec.Assets[0].Endpoint = pin.String()
	show := segment.Show(spec, time.Now(), eps)
	if show[0].Endpoint != "100.64.9.9" || show[1].Endpoint != rtu || rtu == "" {
		t.Errorf("endpoints %q, %q; want 100.64.9.9 (pinned) and %q (allocated)", show[0].Endpoint, show[1].Endpoint, rtu)
	}
	if _, err := os.Stat(busy); err != nil {
		t.Errorf("the overlay's temporary file was touched: %v", err)
	}
	if after, _ := os.ReadFile(path); string(after) != string(before) {
		t.Error("the overlay table changed")
	}
	if show := segment.Show(spec, time.Now(), nil); show[1].Endpoint != "" {
		t.Errorf("without the table: rtu-1 endpoint %q", show[1].Endpoint)
	}

	if eps, err := segment.ReadOverlayEndpoints(filepath.Join(dir, "none.cbor")); err != nil || len(eps) != 0 {
		t.Errorf("missing table: %v, %v; want empty", eps, err)
	}
	// The state file damaged on its own: show takes the mirror's table,
	// what the overlay service runs from; both damaged: an error.
	if err := os.WriteFile(path, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if eps, err := segment.ReadOverlayEndpoints(path); err != nil || eps["rtu-1"] != rtu {
		t.Errorf("state file damaged, mirror sound: %v, %v; want rtu-1 at %s", eps, err, rtu)
	}
	if err := os.WriteFile(alloc.MirrorPath(path), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := segment.ReadOverlayEndpoints(path); err == nil {
		t.Error("a corrupt table read without error")
	}
}

// An exception's counters do not restart when the table is re-applied (a
// policy reload, a drift repair, a restart of the service): the kernel's
// element counters do, so the service carries them over.
func TestExceptionCountersSurviveReapply(t *testing.T) {
	l := nslab.New(t)
	l.Plant2.Listen(t, nslab.Asset3+":502")
	spec := labSpec(ruleset.ModeEnforce)
	spec.Exceptions = []ruleset.Exception{{ID: "hist-pull", From: nslab.Asset1, To: nslab.Asset3, Protocol: "tcp", Port: 502,
		Owner: "ops", Expires: time.Now().Add(time.Hour)}}
	counters := func(svc *segment.Service) ruleset.ExceptionCounter {
		t.Helper()
		st, err := svc.Status()
		if err != nil || len(st.Exceptions) != 1 {
			t.Fatalf("status: %+v, %v", st, err)
		}
		return st.Exceptions[0]
	}
	flow := func(n int) {
		t.Helper()
		for range n {
			if ok, err := l.Plant.Reach(nslab.Asset3+":502", nslab.Identity{}, 10*time.Second); !ok || err != nil {
				t.Fatalf("the exception's flow: %v %v", ok, err)
			}
		}
	}
	state := filepath.Join(t.TempDir(), "history.cbor")
	svc, _ := newService(t, l, spec, segment.WithStateFile(state))
	if err := svc.Start(); err != nil {
		t.Fatal(err)
	}
	flow(3)
	first := counters(svc)
	if first.Packets == 0 {
		t.Fatalf("no packets counted for the exception: %+v", first)
	}
	edited := *spec
	edited.Assets = append(append([]ruleset.Asset(nil), spec.Assets...),
		ruleset.Asset{Name: "plc-9", Zone: "cell-a", Mode: ruleset.ModeEnforce, Address: "10.20.0.99", TCPPorts: []uint16{502}})
	if err := svc.SetSpec(&edited, "test reload"); err != nil {
		t.Fatal(err)
	}
	if got := counters(svc); got.Packets < first.Packets || got.Bytes < first.Bytes {
		t.Fatalf("after a re-apply: %d packets, %d bytes; before it %d, %d", got.Packets, got.Bytes, first.Packets, first.Bytes)
	}
	flow(2)
	// The last connections' closing packets may still be on their way:
	// read once the count holds still.
	second := counters(svc)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		time.Sleep(200 * time.Millisecond)
		next := counters(svc)
		if next.Packets == second.Packets && next.Bytes == second.Bytes {
			break
		}
		second = next
	}
	if second.Packets <= first.Packets {
		t.Fatalf("more traffic after the re-apply: %d packets, want more than %d", second.Packets, first.Packets)
	}
	// A new service process (restart) takes over what earlier tables
	// counted (from its state file) and what the table in the kernel
	// counted (at its first apply).
	svc2, _ := newService(t, l, &edited, segment.WithStateFile(state))
	if err := svc2.Start(); err != nil {
		t.Fatal(err)
	}
	if got := counters(svc2); got.Packets != second.Packets || got.Bytes != second.Bytes {
		t.Fatalf("after a restart: %d packets, %d bytes; want %d, %d (nothing lost, nothing counted twice)",
			got.Packets, got.Bytes, second.Packets, second.Bytes)
	}
}

// The service's memory is the would-block history and the file its copy:
// read once, at start, and written when the history changes (a save
// compares with what it last wrote, not with a new read of the file).
func TestHistoryFileIsWrittenFromMemory(t *testing.T) {
	l := nslab.New(t)
	l.Plant2.Listen(t, nslab.Asset3+":502")
	spec := labSpec(ruleset.ModeMonitor)
	state := filepath.Join(t.TempDir(), "history.cbor")
	svc, _ := newService(t, l, spec, segment.WithStateFile(state))
	if err := svc.Start(); err != nil {
		t.Fatal(err)
	}
	flow := func() {
		t.Helper()
		if ok, err := l.Client.Reach(nslab.Asset3+":502", nslab.Identity{UID: 1000}, 10*time.Second); !ok || err != nil {
			t.Fatalf("client to monitored rtu-1: reachable=%v err=%v", ok, err)
		}
	}
	flow()
	if _, err := svc.Report(); err != nil {
		t.Fatal(err)
	}
	// A reload writes what the table generation counted into the history;
	// a second one has nothing to add and leaves the file as it is, even
	// when the file no longer holds what the service wrote.
	if err := svc.SetSpec(spec, "reload"); err != nil {
		t.Fatal(err)
	}
	foreign := []byte("not written by the service")
	if err := os.WriteFile(state, foreign, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := svc.SetSpec(spec, "reload again"); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(state); string(b) != string(foreign) {
		t.Errorf("a save without a change rewrote the file (it read it again)")
	}
	// New traffic: the history in memory is written out whole (read once
	// the connection's closing packets are counted).
	flow()
	report := func(svc *segment.Service) []ruleset.WouldBlock {
		t.Helper()
		r, err := svc.Report()
		if err != nil || len(r) != 1 {
			t.Fatalf("report: %+v, %v; want the one flow", r, err)
		}
		return r
	}
	want := report(svc)
	for stable := 0; stable < 3; {
		time.Sleep(100 * time.Millisecond)
		if next := report(svc); next[0].Packets == want[0].Packets {
			stable++
		} else {
			want, stable = next, 0
		}
	}
	if b, _ := os.ReadFile(state); string(b) == string(foreign) {
		t.Fatal("the history changed and the file was not written")
	}
	if _, err := os.Stat(state + ".corrupt"); !os.IsNotExist(err) {
		t.Errorf("the file was read after start (moved aside as unreadable): %v", err)
	}
	svc2, _ := newService(t, l, spec, segment.WithStateFile(state))
	if err := svc2.Start(); err != nil {
		t.Fatal(err)
	}
	got := report(svc2)
	if g, w := got[0], want[0]; g.Flow != w.Flow || g.Packets != w.Packets || g.Bytes != w.Bytes || !g.FirstSeen.Equal(w.FirstSeen) || !g.LastSeen.Equal(w.LastSeen) {
		t.Errorf("history after a restart:\n  %+v\nwant the first service's:\n  %+v", g, w)
	}
}

// An exception ends by the wall clock. The kernel's element timeout and
// the service's expiry timer both run on clocks that stand still while a
// VM or machine is suspended and ignore a clock set forward; the
// periodic check compares with the wall clock. The gate's clock jumps two
// hours into a one-hour exception: within a few checks the exception is
// out of the kernel, announced, its flow stops and forwarding is off.
func TestExceptionEndsWhenTheClockJumps(t *testing.T) {
	l := nslab.New(t)
	l.Plant2.Listen(t, nslab.Asset3+":502")
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	spec := labSpec(ruleset.ModeEnforce)
	spec.Exceptions = []ruleset.Exception{{ID: "hist-pull", From: nslab.Asset1, To: nslab.Asset3, Protocol: "tcp", Port: 502,
		Owner: "ops", Expires: now.Add(time.Hour)}}
	svc, lg := newService(t, l, spec, segment.WithClock(clock), segment.WithInterval(200*time.Millisecond))
	if err := svc.Start(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	if ok, err := l.Plant.Reach(nslab.Asset3+":502", nslab.Identity{}, 10*time.Second); !ok || err != nil {
		t.Fatalf("the exception's flow before the jump: %v %v", ok, err)
	}
	if !l.Forwarding(t) {
		t.Fatal("forwarding off with an active exception")
	}

	mu.Lock()
	now = now.Add(2 * time.Hour)
	mu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	for len(lg.matching("segment: exception-expired: exception hist-pull")) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no expiry 10 s after the clock jumped past it; log: %q", lg.matching("segment: "))
		}
		time.Sleep(50 * time.Millisecond)
	}
	st, err := svc.Status()
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Exceptions) != 0 {
		t.Errorf("exceptions in the kernel after expiry: %+v", st.Exceptions)
	}
	if l.Forwarding(t) {
		t.Error("forwarding still on with no exception and no monitor zone")
	}
	if ok, _ := l.Plant.Reach(nslab.Asset3+":502", nslab.Identity{}, 1500*time.Millisecond); ok {
		t.Error("the expired exception's flow still passes")
	}
}

// Fail closed when a repair fails: the table deleted by hand (nft
// delete table) and the full ruleset refused by the kernel leave the
// baseline in force, not an empty namespace; the next check that can
// apply the spec brings it back.
func TestFailedRepairLeavesTheBaseline(t *testing.T) {
	l := nslab.New(t)
	l.Plant.Listen(t, nslab.Asset1+":502")
	proxy := nslab.Identity{UID: 990, Mark: 0x5a}
	other := nslab.Identity{UID: 1000}
	svc, lg := newService(t, l, labSpec(ruleset.ModeEnforce))
	if err := svc.Start(); err != nil {
		t.Fatal(err)
	}
	if ok, err := l.Gate.Reach(nslab.Asset1+":502", proxy, 10*time.Second); !ok || err != nil {
		t.Fatalf("the proxy to plc-1: %v %v", ok, err)
	}
	failing := func(*nftables.Conn, *ruleset.Spec, time.Time) (*ruleset.Desired, error) {
		return nil, errors.New("injected: the kernel refused the batch")
	}
	segment.SetApply(svc, failing)
	if out, err := l.Gate.Command("nft", "delete", "table", "inet", "otgate").CombinedOutput(); err != nil {
		t.Fatalf("nft delete table: %v\n%s", err, out)
	}
	if ok, _ := l.Gate.Reach(nslab.Asset1+":502", other, 10*time.Second); !ok {
		t.Fatal("control: without the table another uid should reach plc-1")
	}
	drift, err := svc.Check()
	if err == nil || len(drift) == 0 {
		t.Fatalf("Check() = %v, %v; want the drift and the failed repair", drift, err)
	}
	if len(lg.matching("segment: error: drift repair failed (injected")) != 1 {
		t.Errorf("no error event naming the fallback: %q", lg.matching("segment: error"))
	}
	for _, id := range []nslab.Identity{other, {}, proxy} {
		if ok, _ := l.Gate.Reach(nslab.Asset1+":502", id, 1500*time.Millisecond); ok {
			t.Errorf("uid %d mark %#x reaches plc-1 after the failed repair; want the baseline (nothing reachable)", id.UID, id.Mark)
		}
	}
	// Still failing: the baseline stays without being applied again.
	if _, err := svc.Check(); err == nil {
		t.Error("second Check() = nil with the apply still failing")
	}
	if n := len(lg.matching("segment: error: drift repair failed (injected")); n != 1 {
		t.Errorf("the baseline applied again on the second failure (%d fallbacks)", n)
	}

	segment.SetApply(svc, ruleset.Apply)
	if _, err := svc.Check(); err != nil {
		t.Fatalf("Check() with the apply working: %v", err)
	}
	if ok, err := l.Gate.Reach(nslab.Asset1+":502", proxy, 10*time.Second); !ok || err != nil {
		t.Errorf("the proxy to plc-1 after the repair: %v %v", ok, err)
	}
}

// An exception lets one asset's address reach another's port: a host on
// the uplink that gives itself that address must not get its packets
// forwarded to the OT side under the exception. The service turns on
// strict reverse-path filtering with forwarding, so the kernel drops a
// packet whose source routes back through another interface before the
// forward chain sees it: the exception counts nothing.
func TestExceptionRefusesForgedSource(t *testing.T) {
	l := nslab.New(t)
	l.Plant2.Listen(t, nslab.Asset3+":502")
	spec := labSpec(ruleset.ModeEnforce)
	spec.Exceptions = []ruleset.Exception{{ID: "hist-pull", From: nslab.Asset1, To: nslab.Asset3, Protocol: "tcp", Port: 502,
		Owner: "ops", Expires: time.Now().Add(time.Hour)}}
	svc, _ := newService(t, l, spec)
	if err := svc.Start(); err != nil {
		t.Fatal(err)
	}
	if !l.Forwarding(t) {
		t.Fatal("forwarding off with an active exception")
	}
	packets := func() uint64 {
		t.Helper()
		st, err := svc.Status()
		if err != nil || len(st.Exceptions) != 1 {
			t.Fatalf("status: %+v, %v", st, err)
		}
		return st.Exceptions[0].Packets
	}
	// The client, on the uplink, takes asset 1's address and connects
	// from it (its SYNs go through the gate; the answers would go to the
	// real asset 1, so it never connects either way).
	if out, err := l.Client.Command("ip", "addr", "add", nslab.Asset1+"/32", "dev", "cl0").CombinedOutput(); err != nil {
		t.Fatalf("client takes asset 1's address: %v\n%s", err, out)
	}
	err := l.Client.Do(func() error {
		d := net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(nslab.Asset1)}}
		if c, err := d.Dial("tcp", nslab.Asset3+":502"); err == nil {
			c.Close()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := packets(); n != 0 {
		t.Fatalf("the exception forwarded %d packets from the uplink with a forged source", n)
	}
	// The real asset 1 still has its flow.
	if ok, err := l.Plant.Reach(nslab.Asset3+":502", nslab.Identity{}, 10*time.Second); !ok || err != nil {
		t.Fatalf("the exception's own flow: %v %v", ok, err)
	}
	if n := packets(); n == 0 {
		t.Fatal("the exception's own flow was not counted: the check above proves nothing")
	}
}

// nftHandle is the handle of the rule with comment otgate:name in chain of
// the gate's table.
func nftHandle(t *testing.T, l *nslab.Lab, chain, name string) string {
	t.Helper()
	out, err := l.Gate.Command("nft", "-a", "list", "chain", "inet", "otgate", chain).CombinedOutput()
	if err != nil {
		t.Fatalf("nft -a list chain %s: %v\n%s", chain, err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, `comment "otgate:`+name+`"`) {
			return line[strings.LastIndex(line, " ")+1:]
		}
	}
	t.Fatalf("no rule %s in chain %s:\n%s", name, chain, out)
	return ""
}

// The rules that let the replies of a would-block flow from an
// enforce-zone asset (plc-1) to a monitor-zone asset (rtu-1) through are
// drift-checked like every other: the forward chain's rule deleted, or
// the would_block chain's accept rule edited to set no conntrack mark,
// breaks such connections (their replies are dropped); the next check
// names the drift and repairs it, and the connections work again.
func TestMonitorRepliesDriftRepaired(t *testing.T) {
	l := nslab.New(t)
	l.Plant2.Listen(t, nslab.Asset3+":7")
	svc, lg := newService(t, l, labSpec(ruleset.ModeMonitor)) // plc-1 enforces, rtu-1 monitors
	if err := svc.Start(); err != nil {
		t.Fatal(err)
	}
	reach := func(want bool, what string) {
		t.Helper()
		timeout := 10 * time.Second
		if !want {
			timeout = 1500 * time.Millisecond
		}
		ok, err := l.Plant.Reach(nslab.Asset3+":7", nslab.Identity{}, timeout)
		if err != nil || ok != want {
			t.Fatalf("plc-1 to rtu-1 tcp/7 %s: reachable=%v err=%v, want %v", what, ok, err, want)
		}
	}
	reach(true, "(control)")

	for _, tc := range []struct {
		chain, rule string
		edit        []string // nft arguments after the handle
		drift       string
	}{
		{"forward", "forward/monitor-replies", nil, "chain forward: rule forward/monitor-replies is missing"},
		{"would_block", "would_block/accept", []string{"counter", "accept", "comment", `"otgate:would_block/accept"`},
			"chain would_block: rule would_block/accept was modified"},
	} {
		h := nftHandle(t, l, tc.chain, tc.rule)
		args := []string{"delete", "rule", "inet", "otgate", tc.chain, "handle", h}
		if tc.edit != nil {
			args = append([]string{"replace", "rule", "inet", "otgate", tc.chain, "handle", h}, tc.edit...)
		}
		if out, err := l.Gate.Command("nft", args...).CombinedOutput(); err != nil {
			t.Fatalf("nft %v: %v\n%s", args, err, out)
		}
		reach(false, "with "+tc.rule+" "+args[0]+"d")
		drift, err := svc.Check()
		if err != nil {
			t.Fatalf("Check: %v", err)
		}
		if strings.Join(drift, "\n") != tc.drift {
			t.Errorf("drift %q, want %q", drift, tc.drift)
		}
		if got := lg.matching("segment: drift: " + tc.drift); len(got) != 1 {
			t.Errorf("drift logged %d times: %q", len(got), lg.matching("segment: drift"))
		}
		reach(true, "after the repair of "+tc.rule)
	}
}

// rpFilter reads net.ipv4.conf.<iface>.rp_filter in the gate namespace.
func rpFilter(t *testing.T, l *nslab.Lab, iface string) string {
	t.Helper()
	var b []byte
	if err := l.Gate.Do(func() (err error) {
		b, err = os.ReadFile("/proc/sys/net/ipv4/conf/" + iface + "/rp_filter")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// setRPFilter sets net.ipv4.conf.<iface>.rp_filter in the gate namespace
// (someone else, behind the service's back).
func setRPFilter(t *testing.T, l *nslab.Lab, iface, v string) {
	t.Helper()
	if err := l.Gate.Do(func() error { return os.WriteFile("/proc/sys/net/ipv4/conf/"+iface+"/rp_filter", []byte(v), 0) }); err != nil {
		t.Fatal(err)
	}
}

// forgedSYNs has the client, on the uplink, take plc-1's address (once)
// and connect from it to rtu-1 tcp/502, which an exception opens for
// plc-1: the SYNs the gate forwards count under the exception (the answers
// go to the real plc-1, so it never connects either way).
func forgedSYNs(t *testing.T, l *nslab.Lab) {
	t.Helper()
	if out, err := l.Client.Command("ip", "addr", "replace", nslab.Asset1+"/32", "dev", "cl0").CombinedOutput(); err != nil {
		t.Fatalf("client takes plc-1's address: %v\n%s", err, out)
	}
	err := l.Client.Do(func() error {
		d := net.Dialer{Timeout: 1500 * time.Millisecond, LocalAddr: &net.TCPAddr{IP: net.ParseIP(nslab.Asset1)}}
		if c, err := d.Dial("tcp", nslab.Asset3+":502"); err == nil {
			c.Close()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func exceptionSpec() *ruleset.Spec {
	spec := labSpec(ruleset.ModeEnforce)
	spec.Exceptions = []ruleset.Exception{{ID: "hist-pull", From: nslab.Asset1, To: nslab.Asset3, Protocol: "tcp", Port: 502,
		Owner: "ops", Expires: time.Now().Add(time.Hour)}}
	return spec
}

// exceptionPackets is what the one exception of the service counted.
func exceptionPackets(t *testing.T, svc *segment.Service) uint64 {
	t.Helper()
	st, err := svc.Status()
	if err != nil || len(st.Exceptions) != 1 {
		t.Fatalf("status: %+v, %v", st, err)
	}
	return st.Exceptions[0].Packets
}

// Strict reverse-path filtering is checked on every check while forwarding
// is on, not only set when forwarding is turned on: turned off behind the
// service's back ("all" and "default" to 0, and then an interface to 2,
// loose, which overrides the strict "all"), the hole is real (a forged
// source is forwarded under an exception), and the next check logs it and
// sets it back, forwarding staying on.
func TestReversePathFilterDriftRepaired(t *testing.T) {
	l := nslab.New(t)
	l.Plant2.Listen(t, nslab.Asset3+":502")
	svc, lg := newService(t, l, exceptionSpec())
	if err := svc.Start(); err != nil {
		t.Fatal(err)
	}
	if !l.Forwarding(t) || rpFilter(t, l, "all") != "1" || rpFilter(t, l, "default") != "1" {
		t.Fatalf("after start: forwarding %v, rp_filter all %s default %s; want on, 1, 1", l.Forwarding(t), rpFilter(t, l, "all"), rpFilter(t, l, "default"))
	}

	setRPFilter(t, l, "all", "0")
	setRPFilter(t, l, "default", "0")
	forgedSYNs(t, l)
	if n := exceptionPackets(t, svc); n == 0 {
		t.Fatal("control: with rp_filter off the forged source was not forwarded; the rest proves nothing")
	}
	drift, err := svc.Check()
	if err != nil || len(drift) != 0 {
		t.Fatalf("Check() = %q, %v; want no ruleset drift and no error", drift, err)
	}
	for _, want := range []string{
		"segment: drift: net.ipv4.conf.all.rp_filter is 0, want 1 (strict reverse-path filtering) while IPv4 forwarding is on",
		"segment: drift: net.ipv4.conf.default.rp_filter is 0, want 1 (strict reverse-path filtering) while IPv4 forwarding is on",
		"segment: forwarding: strict reverse-path filtering set back; IPv4 forwarding stays on",
	} {
		if got := lg.matching(want); len(got) != 1 {
			t.Errorf("log has %d lines %q; all: %q", len(got), want, lg.matching("segment: "))
		}
	}
	if rpFilter(t, l, "all") != "1" || rpFilter(t, l, "default") != "1" || !l.Forwarding(t) {
		t.Fatalf("after the check: rp_filter all %s default %s, forwarding %v; want 1, 1, on", rpFilter(t, l, "all"), rpFilter(t, l, "default"), l.Forwarding(t))
	}
	n := exceptionPackets(t, svc)
	forgedSYNs(t, l)
	if m := exceptionPackets(t, svc); m != n {
		t.Errorf("after the repair the forged source was forwarded (%d packets)", m-n)
	}

	// Loose on the uplink: max(all, up0) = 2, the forged source passes.
	setRPFilter(t, l, nslab.Uplink, "2")
	forgedSYNs(t, l)
	if m := exceptionPackets(t, svc); m == n {
		t.Fatal("control: with the uplink loose the forged source was not forwarded")
	}
	if _, err := svc.Check(); err != nil {
		t.Fatal(err)
	}
	if got := lg.matching("segment: drift: net.ipv4.conf.up0.rp_filter is 2 (loose)"); len(got) != 1 {
		t.Errorf("loose uplink not logged: %q", lg.matching("segment: "))
	}
	if v := rpFilter(t, l, nslab.Uplink); v != "1" {
		t.Errorf("up0 rp_filter %s after the check, want 1", v)
	}
	n = exceptionPackets(t, svc)
	forgedSYNs(t, l)
	if m := exceptionPackets(t, svc); m != n {
		t.Errorf("after the repair of the uplink the forged source was forwarded (%d packets)", m-n)
	}

	// In step: a check says nothing more.
	before := len(lg.matching("segment: "))
	if _, err := svc.Check(); err != nil {
		t.Fatal(err)
	}
	if got := lg.matching("segment: "); len(got) != before {
		t.Errorf("a check in step logged %q", got[before:])
	}
	if d := svc.Degraded(); d != nil {
		t.Errorf("Degraded() = %v", d)
	}
}

// refusingForwarding is the gate's real switch, except that while refuse
// is set, turning forwarding on fails the way SysctlForwarding.Set(true)
// fails when rp_filter cannot be written: before it writes anything.
type refusingForwarding struct {
	nsForwarding
	refuse *atomic.Bool
}

func (f refusingForwarding) Set(on bool) error {
	if on && f.refuse.Load() {
		return errors.New("strict reverse-path filtering, needed before forwarding: injected: permission denied")
	}
	return f.nsForwarding.Set(on)
}

// Fail closed: rp_filter turned off behind the service's back and not
// settable again turns forwarding off (the routed flows stop), logged with
// the reason, and the service is degraded until a check can set both.
func TestReversePathFilterUnrepairableTurnsForwardingOff(t *testing.T) {
	l := nslab.New(t)
	l.Plant2.Listen(t, nslab.Asset3+":502")
	refuse := &atomic.Bool{}
	svc, lg := newService(t, l, exceptionSpec(), segment.WithForwarding(refusingForwarding{nsForwarding{l.Gate}, refuse}))
	if err := svc.Start(); err != nil {
		t.Fatal(err)
	}
	if ok, err := l.Plant.Reach(nslab.Asset3+":502", nslab.Identity{}, 10*time.Second); !ok || err != nil || !l.Forwarding(t) {
		t.Fatalf("control: the exception's flow %v %v, forwarding %v", ok, err, l.Forwarding(t))
	}

	refuse.Store(true)
	setRPFilter(t, l, "all", "0")
	if _, err := svc.Check(); err == nil || !strings.Contains(err.Error(), "strict reverse-path filtering") {
		t.Fatalf("Check() error %v; want the failed repair", err)
	}
	if l.Forwarding(t) {
		t.Error("forwarding still on with rp_filter off")
	}
	if ok, _ := l.Plant.Reach(nslab.Asset3+":502", nslab.Identity{}, 1500*time.Millisecond); ok {
		t.Error("the exception's flow still routed with rp_filter off")
	}
	errs := lg.matching("segment: error: IPv4 forwarding turned off: net.ipv4.conf.all.rp_filter is 0, want 1 (strict reverse-path filtering), and it could not be set back: ")
	if len(errs) != 1 || !strings.Contains(errs[0], "injected: permission denied") {
		t.Errorf("error lines %q; all: %q", errs, lg.matching("segment: "))
	}
	if d := svc.Degraded(); d == nil {
		t.Error("Degraded() = nil with forwarding turned off against the spec")
	}
	if _, err := svc.Check(); err == nil {
		t.Error("second Check() = nil while forwarding cannot be turned on")
	}
	if l.Forwarding(t) {
		t.Error("a second check turned forwarding on with rp_filter still off")
	}

	refuse.Store(false)
	if _, err := svc.Check(); err != nil {
		t.Fatalf("Check() once rp_filter can be set: %v", err)
	}
	if !l.Forwarding(t) || rpFilter(t, l, "all") != "1" || svc.Degraded() != nil {
		t.Errorf("after the check: forwarding %v, rp_filter all %s, degraded %v; want on, 1, nil", l.Forwarding(t), rpFilter(t, l, "all"), svc.Degraded())
	}
	if ok, err := l.Plant.Reach(nslab.Asset3+":502", nslab.Identity{}, 10*time.Second); !ok || err != nil {
		t.Errorf("the exception's flow after the repair: %v %v", ok, err)
	}
}
