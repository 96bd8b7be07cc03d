package main_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/otgate/otgate/internal/syncbuf"

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
	out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput()
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
	expires := time.Now().Add(5 * time.Second)
	if err := segment.WriteSpec(specPath, testSpec(expires)); err != nil {
		t.Fatal(err)
	}
	svc := start(t, l, bin, specPath, sock, "1h") // drift is found through nftables events

	show, err := exec.Command(cli, "segment", "-socket", sock, "show").CombinedOutput()
	if err != nil {
		t.Fatalf("otgate segment show: %v\n%s", err, show)
	}
	for _, want := range []string{
		"plc-1 (10.20.0.10, zone cell-a, enforce mode, endpoint 100.64.0.1)",
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

	// Exception expiry: an event, and the flow stops.
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
	if ok, _ := l.Plant.Reach(nslab.Asset3+":502", root, 1500*time.Millisecond); ok {
		t.Error("exception flow still passes after expiry")
	}
}

// While the service is killed and restarted in a loop, probes that must
// fail never succeed, and the proxy's path keeps working.
func TestKillRestartLoopLeaksNothing(t *testing.T) {
	l := nslab.New(t)
	bin := buildBinary(t, ".", "otgate-segment")
	l.Plant.Listen(t, nslab.Asset1+":502")
	l.Plant2.Listen(t, nslab.Asset3+":502")
	dir := t.TempDir()
	specPath, sock := filepath.Join(dir, "segment.cbor"), filepath.Join(dir, "segment.sock")
	spec := testSpec(time.Now().Add(-time.Hour)) // exception long expired
	spec.Assets[1].Mode = ruleset.ModeEnforce
	if err := segment.WriteSpec(specPath, spec); err != nil {
		t.Fatal(err)
	}
	start(t, l, bin, specPath, sock, "200ms").kill() // first install, then the loop

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
	// dropped SYN), one on the proxy's allowed path.
	for i := 0; i < 3; i++ {
		wg.Add(4)
		go prober(l.Gate, other, nslab.Asset1+":502", false)
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
	t.Logf("%d restarts; %d probes refused, %d leaked; proxy path %d ok, %d failed",
		restarts, refused.Load(), leaked.Load(), proxyOK.Load(), proxyFail.Load())
	if leaked.Load() != 0 {
		t.Errorf("%d probes leaked through during the kill/restart loop", leaked.Load())
	}
	if refused.Load() == 0 || proxyOK.Load() == 0 {
		t.Errorf("probes did not run: refused %d, proxy ok %d", refused.Load(), proxyOK.Load())
	}
	if proxyFail.Load() != 0 {
		t.Errorf("proxy path failed %d times during restarts (an apply must not disturb allowed flows)", proxyFail.Load())
	}
	_ = os.Remove(sock)
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
