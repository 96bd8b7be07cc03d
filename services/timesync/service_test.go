package timesync

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/otgate/otgate/site"
)

// tolerance of an offset measured against chronyd on loopback.
const tolerance = 50 * time.Millisecond

func newService(t *testing.T, l *lab, c *testClock, lg *logs, marker string, servers ...string) *Service {
	return &Service{
		Servers: servers, Clock: c, Dial: l.dial, Marker: marker,
		RTC:     filepath.Join(t.TempDir(), "no-rtc0"), // never the host's hardware clock
		Timeout: time.Second, Logf: lg.logf, Status: lg.note,
	}
}

// A boot, told by the clock the service corrects: the gate wakes three
// hours behind (a dead RTC battery); the first sync steps it, by what a
// real NTP server says, to within a few milliseconds; the next polls
// slew; a server that later says the clock is two hours off is refused
// (the clock was synchronised this boot) and nothing is applied; a
// restart of the service in the same boot still only slews, and a
// reboot (no marker) steps again.
func TestBootStepsThenSlewsAndRefusesAJump(t *testing.T) {
	l := newLab(t)
	l.chronyd(t, "192.0.2.2", "local stratum 3")
	marker := filepath.Join(t.TempDir(), "timesync.synced")
	c := &testClock{}
	c.set(-3 * time.Hour)
	lg := newLogs(t)
	svc := newService(t, l, c, lg, marker, "192.0.2.2")
	ctx := context.Background()

	r := svc.Poll(ctx)
	if r.Action != ActionStepped || !near(r.Offset, 3*time.Hour, tolerance) {
		t.Fatalf("first poll: %s by %s (%v); want stepped by +3h", r.Action, signed(r.Offset), r.Err)
	}
	if steps, slews := c.counts(); steps != 1 || slews != 0 || !near(c.skew, 0, tolerance) {
		t.Errorf("after the first sync: %d steps, %d slews, clock off by %s; want one step to the server's time", steps, slews, c.skew)
	}
	if !near(r.After.Sub(r.Before), 3*time.Hour, tolerance) {
		t.Errorf("logged %s -> %s: not a 3 h step", stamp(r.Before), stamp(r.After))
	}
	if lg.match(`^timesync: stepped the clock by \+10(799\.99|800\.00)\d*s: \S+ -> \S+ \(first sync of this boot; servers 192\.0\.2\.2 \+10(799|800)\.`) != 1 {
		t.Errorf("no step log line with the offset, times and server")
	}
	if b, err := os.ReadFile(marker); err != nil || !strings.Contains(string(b), " stepped by +10") || !strings.Contains(string(b), "from 192.0.2.2") {
		t.Errorf("marker %s: %q, %v", marker, b, err)
	}
	if st := lg.lastStatus(); !strings.HasPrefix(st, "synchronised: stepped by +10") {
		t.Errorf("status %q", st)
	}
	if lg.count("no hardware clock ("+svc.RTC+")") != 1 {
		t.Errorf("a missing hardware clock is not said once")
	}

	// In step now: the following polls slew, and the interval grows.
	first := r.Next
	for i := 0; i < 2; i++ {
		r = svc.Poll(ctx)
		if r.Action != ActionSlewed || !near(r.Offset, 0, tolerance) {
			t.Fatalf("poll %d: %s by %s (%v); want a small slew", i+2, r.Action, signed(r.Offset), r.Err)
		}
	}
	if steps, slews := c.counts(); steps != 1 || slews != 2 {
		t.Errorf("%d steps, %d slews; want 1, 2", steps, slews)
	}
	if first != DefaultPollMin || r.Next != 4*DefaultPollMin {
		t.Errorf("poll intervals %s then %s; want %s growing to %s", first, r.Next, DefaultPollMin, 4*DefaultPollMin)
	}
	if lg.count("no hardware clock") != 1 {
		t.Errorf("the missing hardware clock is retried")
	}

	// The servers now say the clock is two hours off: above the panic
	// threshold after a sync: refused, nothing applied, loudly.
	c.set(-2 * time.Hour)
	r = svc.Poll(ctx)
	if r.Action != ActionRefused || !near(r.Offset, 2*time.Hour, tolerance) {
		t.Fatalf("a 2 h offset after the sync: %s by %s; want refused", r.Action, signed(r.Offset))
	}
	if steps, slews := c.counts(); steps != 1 || slews != 2 {
		t.Errorf("the refused offset was applied: %d steps, %d slews", steps, slews)
	}
	if lg.match(`^timesync: REFUSED: the servers say the clock is off by \+7(199|200)\.\d+s, more than the panic threshold 1000s`) != 1 || !strings.HasPrefix(lg.lastStatus(), "REFUSED offset +7") {
		t.Errorf("refusal not logged or not in the status (%q)", lg.lastStatus())
	}
	// Below the panic threshold it is slewed, never stepped.
	c.set(-100 * time.Second)
	if r = svc.Poll(ctx); r.Action != ActionSlewed || !near(r.Offset, 100*time.Second, tolerance) || r.Next != DefaultPollMin {
		t.Errorf("a 100 s offset after the sync: %s by %s, next %s; want slewed, polled again in %s", r.Action, signed(r.Offset), r.Next, DefaultPollMin)
	}
	if lg.count("at 500 ppm: about 55h33m") != 1 {
		t.Errorf("a large slew does not say how long it takes")
	}

	// The service restarts in the same boot: the marker says synced.
	c2 := &testClock{}
	c2.set(-2 * time.Hour)
	svc2 := newService(t, l, c2, lg, marker, "192.0.2.2")
	if r = svc2.Poll(ctx); r.Action != ActionRefused {
		t.Errorf("after a service restart, a 2 h offset: %s; want refused (synchronised this boot)", r.Action)
	}
	// A reboot (the tmpfs marker gone): one step again.
	os.Remove(marker)
	svc3 := newService(t, l, c2, lg, marker, "192.0.2.2")
	if r = svc3.Poll(ctx); r.Action != ActionStepped || !near(c2.skew, 0, tolerance) {
		t.Errorf("after a reboot: %s, clock off by %s; want stepped into place", r.Action, c2.skew)
	}
}

// The first sync with a small offset slews: no step for half a second.
func TestFirstSyncSlewsASmallOffset(t *testing.T) {
	l := newLab(t)
	l.chronyd(t, "192.0.2.2", "local stratum 3")
	c := &testClock{}
	c.set(300 * time.Millisecond)
	lg := &logs{}
	r := newService(t, l, c, lg, "", "192.0.2.2").Poll(context.Background())
	if r.Action != ActionSlewed || !near(r.Offset, -300*time.Millisecond, tolerance) {
		t.Fatalf("%s by %s (%v); want slewed by -0.3 s", r.Action, signed(r.Offset), r.Err)
	}
	if steps, slews := c.counts(); steps != 0 || slews != 1 {
		t.Errorf("%d steps, %d slews", steps, slews)
	}
}

// Replies that fail validation are dropped: a server that lost its own
// sources (chronyd without a reference: leap indicator "not
// synchronised") and one that does not answer; the good one is used.
// With no good one the poll fails, nothing is changed, and the retry
// backs off.
func TestInvalidRepliesAreDropped(t *testing.T) {
	l := newLab(t)
	l.chronyd(t, "192.0.2.2", "local stratum 3")
	l.chronyd(t, "192.0.2.3") // unsynchronised
	l.addr(t, "192.0.2.4")    // nothing listens: port unreachable
	c := &testClock{}
	c.set(-time.Hour)
	lg := newLogs(t)
	svc := newService(t, l, c, lg, "", "192.0.2.3", "192.0.2.2", "192.0.2.4")
	r := svc.Poll(context.Background())
	if r.Action != ActionStepped || len(r.Used) != 1 || r.Used[0] != "192.0.2.2" || !near(r.Offset, time.Hour, tolerance) {
		t.Fatalf("%s by %s from %v (%v); want stepped by +1h from 192.0.2.2 alone", r.Action, signed(r.Offset), r.Used, r.Err)
	}
	t.Logf("samples: %s", describe(r.Samples))
	for _, s := range r.Samples {
		switch s.Server {
		case "192.0.2.3":
			if s.Err == nil || !strings.Contains(s.Err.Error(), "invalid reply") {
				t.Errorf("unsynchronised server: %v; want an invalid reply", s.Err)
			}
		case "192.0.2.4":
			if s.Err == nil {
				t.Error("a server that does not answer has no error")
			}
		}
	}
	if lg.count("192.0.2.3 dropped: invalid reply") != 1 {
		t.Error("the dropped server is not in the log line")
	}

	// Only bad servers: nothing done, retries back off.
	c2 := &testClock{}
	c2.set(-time.Hour)
	bad := newService(t, l, c2, lg, "", "192.0.2.3", "192.0.2.4")
	var nexts []time.Duration
	for i := 0; i < 7; i++ {
		r := bad.Poll(context.Background())
		if r.Action != ActionFailed || !errors.Is(r.Err, ErrNoValid) {
			t.Fatalf("only bad servers: %s (%v)", r.Action, r.Err)
		}
		nexts = append(nexts, r.Next)
	}
	if steps, slews := c2.counts(); steps+slews != 0 {
		t.Errorf("the clock was changed without a valid reply")
	}
	if want := []time.Duration{8 * time.Second, 16 * time.Second, 32 * time.Second, 64 * time.Second, 128 * time.Second, 256 * time.Second, 256 * time.Second}; !slices.Equal(nexts, want) {
		t.Errorf("retries %v; want %v: doubling from %s up to %s", nexts, want, DefaultRetryMin, DefaultRetryMax)
	}
	if st := lg.lastStatus(); !strings.HasPrefix(st, "not synchronised: no valid reply") {
		t.Errorf("status %q", st)
	}
}

// Three real servers agree: the median is used and all three are named.
func TestThreeServersAgree(t *testing.T) {
	l := newLab(t)
	for _, a := range []string{"192.0.2.2", "192.0.2.3", "192.0.2.5"} {
		l.chronyd(t, a, "local stratum 2")
	}
	c := &testClock{}
	c.set(42 * time.Second)
	lg := &logs{}
	r := newService(t, l, c, lg, "", "192.0.2.2", "192.0.2.3", "192.0.2.5").Poll(context.Background())
	if r.Action != ActionStepped || len(r.Used) != 3 || !near(r.Offset, -42*time.Second, tolerance) {
		t.Fatalf("%s by %s from %v (%v)", r.Action, signed(r.Offset), r.Used, r.Err)
	}
}

// The servers come from the applied policy's uplink.ntp, read at every
// poll; with none the service says so once and does nothing.
func TestServersFromThePolicy(t *testing.T) {
	l := newLab(t)
	l.chronyd(t, "192.0.2.2", "local stratum 3")
	dir := t.TempDir()
	apply := func(uplink string) { t.Helper(); applySite(t, dir, uplink) }
	c := &testClock{}
	c.set(-time.Minute)
	lg := &logs{}
	svc := &Service{PolicyPath: filepath.Join(dir, site.AppliedFile), Clock: c, Dial: l.dial, Timeout: time.Second, Logf: lg.logf, Status: lg.note}

	// No policy yet, then one without ntp: idle, said once per change.
	for i := 0; i < 2; i++ {
		if r := svc.Poll(context.Background()); r.Action != ActionIdle || r.Next != DefaultRetryMin {
			t.Fatalf("no policy: %s, next poll in %s; want idle, again in %s (not synced yet this boot)", r.Action, r.Next, DefaultRetryMin)
		}
	}
	apply("")
	for i := 0; i < 2; i++ {
		if r := svc.Poll(context.Background()); r.Action != ActionIdle {
			t.Fatalf("no ntp: %s", r.Action)
		}
	}
	if n := lg.count("timesync: no NTP servers configured"); n != 2 {
		t.Errorf("said %d times; want once for no policy, once for a policy without ntp", n)
	}
	if st := lg.lastStatus(); st != "not synchronised: no NTP servers configured (the site file's uplink.ntp names none)" {
		t.Errorf("status %q", st)
	}
	if steps, slews := c.counts(); steps+slews != 0 {
		t.Error("the clock was changed with no servers")
	}

	apply("uplink:\n  mode: dhcp\n  ntp: [192.0.2.2]\n")
	r := svc.Poll(context.Background())
	if r.Action != ActionStepped || !near(r.Offset, time.Minute, tolerance) {
		t.Fatalf("with uplink.ntp: %s by %s (%v)", r.Action, signed(r.Offset), r.Err)
	}
	if lg.count("timesync: servers from the site file's uplink.ntp: 192.0.2.2") != 1 {
		t.Error("the servers' source is not logged")
	}
}

// With no servers in the site file, the DHCP lease's (LeaseNTP: netconf's
// status on the gate) are used; the site file's list wins over them; a
// lease that cannot be read, or has none, leaves the service idle and
// says why.
func TestServersFromTheDHCPLease(t *testing.T) {
	l := newLab(t)
	l.chronyd(t, "192.0.2.2", "local stratum 3")
	dir := t.TempDir()
	apply := func(uplink string) { t.Helper(); applySite(t, dir, uplink) }
	var lease []string
	var leaseErr error
	c := &testClock{}
	c.set(-time.Minute)
	lg := &logs{}
	svc := &Service{PolicyPath: filepath.Join(dir, site.AppliedFile), Clock: c, Dial: l.dial, Timeout: time.Second, Logf: lg.logf, Status: lg.note,
		LeaseNTP: func(context.Context) ([]string, error) { return lease, leaseErr }}
	apply("")

	leaseErr = errors.New("netconf: connection refused")
	if r := svc.Poll(context.Background()); r.Action != ActionIdle {
		t.Fatalf("lease unreadable: %s", r.Action)
	}
	if st := lg.lastStatus(); !strings.Contains(st, "the site file's uplink.ntp names none; the DHCP lease's cannot be read: netconf: connection refused") {
		t.Errorf("status %q", st)
	}
	leaseErr = nil
	if r := svc.Poll(context.Background()); r.Action != ActionIdle {
		t.Fatalf("lease without NTP servers: %s", r.Action)
	}
	if st := lg.lastStatus(); !strings.Contains(st, "the site file's uplink.ntp names none and the DHCP lease has none") {
		t.Errorf("status %q", st)
	}
	if steps, slews := c.counts(); steps+slews != 0 {
		t.Error("the clock was changed with no servers")
	}

	lease = []string{"192.0.2.2"}
	r := svc.Poll(context.Background())
	if r.Action != ActionStepped || !near(r.Offset, time.Minute, tolerance) {
		t.Fatalf("with the lease's server: %s by %s (%v)", r.Action, signed(r.Offset), r.Err)
	}
	if lg.count("timesync: servers from the DHCP lease (option 42; the site file's uplink.ntp names none): 192.0.2.2") != 1 {
		lg.dump(t)
		t.Error("the servers' source is not logged")
	}

	// The site file's list wins: the lease names a server that does not
	// answer, the site file the one that does.
	lease = []string{"192.0.2.99"}
	apply("uplink:\n  mode: dhcp\n  ntp: [192.0.2.2]\n")
	if r := svc.Poll(context.Background()); r.Err != nil || len(r.Used) != 1 {
		t.Fatalf("site file and lease: %s, used %v (%v)", r.Action, r.Used, r.Err)
	}
	if lg.count("timesync: servers from the site file's uplink.ntp: 192.0.2.2") != 1 {
		lg.dump(t)
		t.Error("the site file's servers were not the ones used")
	}
}

// applySite stores, as the applied policy in dir, a one-zone site whose
// uplink section is uplink ("" none).
func applySite(t *testing.T, dir, uplink string) {
	t.Helper()
	src := "site: t\nzones:\n  - name: cell-1\n    owner: a@b.example\n    mode: enforce\n    interface: eth1\n    subnet: 10.77.0.0/24\n    gate_address: 10.77.0.1\n" + uplink
	s, err := site.Parse("site.yaml", []byte(src), site.Options{})
	if err != nil {
		t.Fatal(err)
	}
	doc, err := site.Compile(s, "site.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if err := site.Store(dir, doc); err != nil {
		t.Fatal(err)
	}
}

// After a sync, a jump above the panic threshold is refused until an
// administrator approves one step (otgate time step): the next poll then
// steps, says who approved, and consumes the approval, so the jump after
// that is refused again; an approval older than ApprovalTTL (boot time) is
// ignored and removed.
func TestApprovedStepPastThePanicThreshold(t *testing.T) {
	l := newLab(t)
	l.chronyd(t, "192.0.2.2", "local stratum 3")
	c := &testClock{}
	lg := newLogs(t)
	svc := newService(t, l, c, lg, filepath.Join(t.TempDir(), "synced"), "192.0.2.2")
	svc.Approval = filepath.Join(t.TempDir(), "step-approved")
	ctx := context.Background()
	if r := svc.Poll(ctx); r.Action != ActionSlewed && r.Action != ActionStepped {
		t.Fatalf("first poll: %s (%v)", r.Action, r.Err)
	}
	c.set(-2 * time.Hour)
	if r := svc.Poll(ctx); r.Action != ActionRefused {
		t.Fatalf("a 2 h jump after the sync: %s, want refused", r.Action)
	}
	if lg.count("`otgate time step` on the gate, or a reboot, allows one step") != 1 {
		t.Errorf("the refusal does not say how to get past it")
	}

	// An approval from longer ago than its TTL is not taken.
	bt, err := bootTime()
	if err != nil {
		t.Fatal(err)
	}
	old := fmt.Sprintf("boottime-ns %d\nby someone\n", (bt - ApprovalTTL - time.Minute).Nanoseconds())
	if err := os.WriteFile(svc.Approval, []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := svc.Poll(ctx); r.Action != ActionRefused {
		t.Fatalf("with an expired approval: %s, want refused", r.Action)
	}
	if _, err := os.Stat(svc.Approval); !errors.Is(err, os.ErrNotExist) || lg.count("step approval by someone is ") != 1 {
		t.Fatalf("the expired approval was not removed and said (%v)", err)
	}

	if err := WriteStepApproval(svc.Approval, "root (sudo by alice)"); err != nil {
		t.Fatal(err)
	}
	r := svc.Poll(ctx)
	if r.Action != ActionStepped || !near(c.skew, 0, tolerance) {
		t.Fatalf("with an approval: %s, clock off by %s; want stepped into place", r.Action, c.skew)
	}
	if lg.match(`^timesync: STEPPED the clock by \+7(199|200)\.\d+s past the panic threshold 1000s, approved by root \(sudo by alice\)`) != 1 {
		t.Errorf("the approved step is not logged with who approved it")
	}
	if !strings.HasPrefix(lg.lastStatus(), "synchronised: stepped by +7") {
		t.Errorf("status %q", lg.lastStatus())
	}
	if _, err := os.Stat(svc.Approval); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the approval was not consumed: %v", err)
	}
	// One approval, one step.
	c.set(-3 * time.Hour)
	if r := svc.Poll(ctx); r.Action != ActionRefused {
		t.Fatalf("the next jump: %s, want refused again", r.Action)
	}
}

// The DHCP lease's NTP servers obey the site file's rule for uplink.ntp:
// the gate takes its time from the uplink side only, never from an
// address in a zone's subnet (an OT device) or the overlay prefix. A
// lease (unauthenticated) naming one has it dropped, and said; the
// others are used.
func TestLeaseServersOnTheOTSideNotUsed(t *testing.T) {
	l := newLab(t)
	l.chronyd(t, "10.77.0.5", "local stratum 3")  // in zone cell-1's subnet (applySite)
	l.chronyd(t, "100.64.0.9", "local stratum 3") // in the default overlay prefix
	dir := t.TempDir()
	applySite(t, dir, "")
	lease := []string{"10.77.0.5", "100.64.0.9"}
	c := &testClock{}
	c.set(-time.Hour)
	lg := newLogs(t)
	svc := &Service{PolicyPath: filepath.Join(dir, site.AppliedFile), Clock: c, Dial: l.dial, Timeout: time.Second, Logf: lg.logf, Status: lg.note,
		LeaseNTP: func(context.Context) ([]string, error) { return lease, nil }}
	if r := svc.Poll(context.Background()); r.Action != ActionIdle {
		t.Fatalf("lease servers on the OT side: %s by %s from %v; want idle, neither used", r.Action, signed(r.Offset), r.Used)
	}
	if steps, slews := c.counts(); steps+slews != 0 {
		t.Fatal("the clock was changed by a server on the OT side")
	}
	for _, want := range []string{
		`NTP server 10.77.0.5 of the DHCP lease is in zone "cell-1" subnet 10.77.0.0/24`,
		"NTP server 100.64.0.9 of the DHCP lease is in the overlay prefix 100.64.0.0/16",
	} {
		if !strings.Contains(lg.lastStatus(), want) {
			t.Errorf("status %q does not say %q", lg.lastStatus(), want)
		}
	}

	// One on the uplink side is used, the others still not.
	l.chronyd(t, "192.0.2.2", "local stratum 3")
	lease = []string{"10.77.0.5", "192.0.2.2", "100.64.0.9"}
	r := svc.Poll(context.Background())
	if r.Action != ActionStepped || !slices.Equal(r.Used, []string{"192.0.2.2"}) {
		t.Fatalf("with one on the uplink side: %s from %v (%v); want stepped from 192.0.2.2 only", r.Action, r.Used, r.Err)
	}
}

// Before the first policy (no applied site file yet), a lease's server in
// the default overlay prefix is still not used, as netconf's lease check
// protects that prefix without a policy too.
func TestLeaseServerInTheOverlayNotUsedWithoutAPolicy(t *testing.T) {
	l := newLab(t)
	l.chronyd(t, "100.64.0.9", "local stratum 3")
	c := &testClock{}
	c.set(-time.Hour)
	lg := newLogs(t)
	svc := &Service{PolicyPath: filepath.Join(t.TempDir(), site.AppliedFile), Clock: c, Dial: l.dial, Timeout: time.Second, Logf: lg.logf, Status: lg.note,
		LeaseNTP: func(context.Context) ([]string, error) { return []string{"100.64.0.9"}, nil }}
	if r := svc.Poll(context.Background()); r.Action != ActionIdle {
		t.Fatalf("a lease server in the overlay prefix, no policy: %s from %v; want idle", r.Action, r.Used)
	}
	if steps, slews := c.counts(); steps+slews != 0 {
		t.Fatal("the clock was changed by a server in the overlay prefix")
	}
	if want := "NTP server 100.64.0.9 of the DHCP lease is in the overlay prefix 100.64.0.0/16"; !strings.Contains(lg.lastStatus(), want) {
		t.Errorf("status %q does not say %q", lg.lastStatus(), want)
	}
}
