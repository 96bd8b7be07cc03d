package segment

import (
	"context"
	"fmt"
	"log"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/otgate/otgate/internal/ready"
	"github.com/otgate/otgate/services/segment/ruleset"
)

// DefaultInterval is how often the kernel is compared with the desired state.
const DefaultInterval = 10 * time.Second

// Event is one thing the service did or saw.
type Event struct {
	Time    time.Time `cbor:"1,keyasint" json:"time"`
	Kind    string    `cbor:"2,keyasint" json:"kind"` // applied, drift, exception-expired, forwarding, error
	Message string    `cbor:"3,keyasint" json:"message"`
}

const maxEvents = 200

// Service reconciles the kernel with a Spec. Create it with New, then Run.
type Service struct {
	conn     *nftables.Conn
	spec     *ruleset.Spec
	interval time.Duration
	logf     func(format string, a ...any)
	now      func() time.Time
	apply    func(*nftables.Conn, *ruleset.Spec, time.Time) (*ruleset.Desired, error) // ruleset.Apply

	mu       sync.Mutex
	desired  *ruleset.Desired
	applied  *ruleset.Snapshot
	appliedT time.Time
	events   []Event
	// policySHA names the applied site policy of the spec in force.
	policySHA [32]byte
	expired   map[string]bool // exception ids announced as expired
	hist      map[string]*ruleset.WouldBlock
	gen       map[string][2]uint64 // kernel counters of the current table generation
	drifts    int
	applies   int

	fwd       Forwarding
	fwdErr    error // the last forwarding change that failed, nil when in step
	fwdLogged bool
	// rpSet: strict reverse-path filtering has been put in place (or
	// found so) once; a later change to it is drift.
	rpSet bool

	// excBase carries each exception's counters across re-applies: a
	// re-apply replaces the set and the kernel's element counters start at
	// zero (google/nftables cannot set them), so what they had counted is
	// added here first. Keyed by exception id and flow.
	excBase map[string][2]uint64

	statePath    string   // would-block history file, "" for none
	stateOnDisk  [32]byte // sha256 of the bytes last read from or written to statePath
	overlayState string   // the overlay allocator's table, read for show
}

// Option configures a Service.
type Option func(*Service)

// WithInterval sets the drift check interval.
func WithInterval(d time.Duration) Option { return func(s *Service) { s.interval = d } }

// WithClock sets the wall clock the service reads (default time.Now):
// exceptions expire by it.
func WithClock(now func() time.Time) Option { return func(s *Service) { s.now = now } }

// WithPolicySHA256 names the applied site policy the initial spec was
// built from (Status.PolicySHA256).
func WithPolicySHA256(sha [32]byte) Option { return func(s *Service) { s.policySHA = sha } }

// WithLogf sets the log function (default log.Printf).
func WithLogf(f func(string, ...any)) Option { return func(s *Service) { s.logf = f } }

// New returns a service for spec on conn.
func New(conn *nftables.Conn, spec *ruleset.Spec, opts ...Option) *Service {
	s := &Service{conn: conn, spec: spec, interval: DefaultInterval, logf: log.Printf, now: time.Now, apply: ruleset.Apply,
		expired: map[string]bool{}, hist: map[string]*ruleset.WouldBlock{}, gen: map[string][2]uint64{},
		fwd: SysctlForwarding{}}
	for _, o := range opts {
		o(s)
	}
	return s
}

func (s *Service) event(kind, format string, a ...any) {
	msg := fmt.Sprintf(format, a...)
	s.logf("segment: %s: %s", kind, msg)
	s.addEvent(kind, msg)
}

// addEvent records an event the caller has logged in its own words.
func (s *Service) addEvent(kind, msg string) {
	e := Event{Time: s.now(), Kind: kind, Message: msg}
	s.events = append(s.events, e)
	if len(s.events) > maxEvents {
		s.events = s.events[len(s.events)-maxEvents:]
	}
}

// Start applies the spec once (an atomic replacement of whatever table is
// there, the baseline from init or a previous run's), carrying the kernel's
// monitor record into the service's history first. On error the kernel
// keeps its previous table.
func (s *Service) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.loadHistoryLocked()
	return s.applyLocked("start")
}

// applyLocked polls the report (so nothing counted before the replacement is
// lost), applies, and snapshots the result for exact drift comparison.
func (s *Service) applyLocked(why string) error {
	now := s.now()
	if err := s.pollLocked(now); err != nil {
		s.logf("segment: report before apply: %v (continuing)", err)
	}
	s.announceExpiredLocked(now)
	carried := s.carriedExceptionCountersLocked()
	d, err := s.apply(s.conn, s.spec, now)
	if err != nil {
		s.event("error", "apply (%s): %v", why, err)
		return err
	}
	snap, err := ruleset.ReadSnapshot(s.conn)
	if err != nil {
		s.event("error", "read back after apply: %v", err)
		return err
	}
	if drift := ruleset.Drift(d, snap, nil); len(drift) != 0 {
		s.event("error", "kernel differs right after apply: %v", drift)
		return fmt.Errorf("segment: kernel differs right after apply: %v", drift)
	}
	// The old table's counts are part of the totals only now that it is
	// gone: a failed apply leaves it, and its counters, in the kernel.
	s.excBase = carried
	s.desired, s.applied, s.appliedT = d, snap, now
	s.gen = map[string][2]uint64{}
	if err := s.saveHistoryLocked(); err != nil {
		s.logf("segment: %v", err)
	}
	s.applies++
	s.event("applied", "%s (%s)", d, why)
	// Only now, with the forward chain of this spec in the kernel, may
	// forwarding follow it. A failure leaves the ruleset applied and the
	// service degraded (Degraded, Status, init hears unhealthy from Run).
	_ = s.syncForwardingLocked(now)
	return nil
}

func excKey(c ruleset.ExceptionCounter) string { return c.ID + " " + c.Flow.String() }

// carriedExceptionCountersLocked returns excBase plus what the kernel's
// exception counters hold now, for the exceptions the spec still has:
// the totals once a re-apply has zeroed the kernel's counters. On the
// service's first apply it takes over what the table of the previous run
// counted.
func (s *Service) carriedExceptionCountersLocked() map[string][2]uint64 {
	keep := map[string]bool{}
	for _, e := range s.spec.Exceptions {
		keep[e.ID] = true
	}
	out := map[string][2]uint64{}
	for k, v := range s.excBase {
		if id, _, _ := strings.Cut(k, " "); keep[id] {
			out[k] = v
		}
	}
	exc, err := ruleset.ReadExceptions(s.conn)
	if err != nil {
		// No table yet (a host without init's baseline) or unreadable.
		s.logf("segment: exception counters before apply: %v (their totals restart)", err)
	}
	for _, c := range exc {
		if keep[c.ID] {
			b := out[excKey(c)]
			out[excKey(c)] = [2]uint64{b[0] + c.Packets, b[1] + c.Bytes}
		}
	}
	return out
}

func (s *Service) announceExpiredLocked(now time.Time) {
	for _, e := range s.spec.Exceptions {
		if !e.Expires.After(now) && !s.expired[e.ID] {
			s.expired[e.ID] = true
			s.event("exception-expired", "exception %s (%s -> %s %s/%d, owner %s) expired at %s; removed",
				e.ID, e.From, e.To, e.Protocol, e.Port, e.Owner, e.Expires.UTC().Format(time.RFC3339))
		}
	}
}

// Check compares the kernel with the desired state and repairs drift with
// one atomic re-apply (forwarding is off while it does), and puts the IPv4
// forwarding switch back in step with the spec (and, while it is on, the
// strict reverse-path filtering it relies on, or else turns it off). It
// returns the ruleset drift it found; an error when a repair failed or
// forwarding cannot be set.
func (s *Service) Check() ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if next := s.spec.NextExpiry(s.appliedT); !next.IsZero() && !next.After(now) {
		if err := s.applyLocked("exception expiry"); err != nil {
			// The table in the kernel still holds the expired exception
			// (its kernel timeout runs on a clock that may lag the
			// wall clock's).
			s.forwardingOffLocked("an exception expired and the ruleset without it could not be applied")
			s.fallBackLocked("exception expiry", err)
			return nil, err
		}
		return nil, s.fwdErr
	}
	snap, err := ruleset.ReadSnapshot(s.conn)
	if err != nil {
		return nil, err
	}
	drift := ruleset.Drift(s.desired, snap, s.applied)
	if len(drift) == 0 {
		return nil, s.syncForwardingLocked(now)
	}
	s.drifts++
	for _, d := range drift {
		s.event("drift", "%s", d)
	}
	s.forwardingOffLocked("the ruleset drifted; off until it is repaired")
	if err := s.applyLocked("drift repair"); err != nil {
		s.fallBackLocked("drift repair", err)
		return drift, err
	}
	return drift, s.fwdErr
}

// fallBackLocked puts the baseline in force after the apply of why
// failed with err, where the kernel's table is not the last one applied
// (it was edited or deleted, or still holds an expired exception): deny
// all rather than leave it so. The baseline is the smallest table the
// kernel takes (no asset, no exception: nothing on the OT side
// reachable); the desired state stays, so the next check finds the drift
// and tries the full ruleset again.
func (s *Service) fallBackLocked(why string, err error) {
	if base, berr := ruleset.BuildBaseline(s.spec.BaselineSpec); berr == nil {
		if snap, rerr := ruleset.ReadSnapshot(s.conn); rerr == nil && len(ruleset.Drift(base, snap, nil)) == 0 {
			// In force since an earlier failure: applying it again would
			// only wake the check (an nftables event) to fail again.
			s.logf("segment: %s failed (%v): the baseline stays in force", why, err)
			return
		}
	}
	if berr := ruleset.ApplyBaseline(s.conn, s.spec.BaselineSpec); berr != nil {
		s.event("error", "%s failed (%v), and so did the baseline: %v", why, err, berr)
		return
	}
	s.event("error", "%s failed (%v): the baseline is in force (nothing on the OT side reachable, no exception) until a repair succeeds", why, err)
}

// Run reconciles until ctx ends: a drift check every interval, right after
// any nftables change in the namespace (netlink events, coalesced), and a
// re-apply at each exception expiry. The table stays in the kernel when Run
// returns.
func (s *Service) Run(ctx context.Context) error {
	t := time.NewTicker(s.interval)
	defer t.Stop()
	changed := s.watch(ctx)
	unhealthy := false // told init; tell again only on a change
	if err := s.Degraded(); err != nil {
		s.logf("segment: degraded: %v", err)
		_ = ready.Unhealthy("segment: " + err.Error())
		unhealthy = true
	}
	for {
		s.mu.Lock()
		next := s.spec.NextExpiry(s.appliedT)
		s.mu.Unlock()
		var expiry <-chan time.Time
		var timer *time.Timer
		// The timer runs on the monotonic clock, which stands still while
		// the machine or VM is suspended and ignores a clock set forward:
		// the ticker's Check compares the expiry with the wall clock too.
		if now := s.now(); !next.IsZero() && next.After(now) { // a past expiry is handled by Check
			timer = time.NewTimer(next.Sub(now))
			expiry = timer.C
		}
		select {
		case <-ctx.Done():
			if timer != nil {
				timer.Stop()
			}
			return nil
		case <-t.C:
		case <-expiry:
		case <-changed:
		}
		if timer != nil {
			timer.Stop()
		}
		if _, err := s.Check(); err != nil {
			s.logf("segment: reconcile: %v", err)
			if !unhealthy {
				_ = ready.Unhealthy("segment: reconcile failed: " + err.Error())
				unhealthy = true
			}
		} else if unhealthy {
			_ = ready.Healthy()
			unhealthy = false
		}
		s.mu.Lock()
		if err := s.pollLocked(s.now()); err != nil {
			s.logf("segment: report: %v", err)
		}
		s.mu.Unlock()
	}
}

// watch returns a channel that receives (coalesced) when the namespace's
// nftables ruleset changes. Without netlink events the periodic check alone
// finds drift.
func (s *Service) watch(ctx context.Context) <-chan struct{} {
	changed := make(chan struct{}, 1)
	mon := nftables.NewMonitor(nftables.WithMonitorAction(nftables.MonitorActionAny),
		nftables.WithMonitorObject(nftables.MonitorObjectRuleset))
	events, err := s.conn.AddGenerationalMonitor(mon)
	if err != nil {
		s.logf("segment: nftables events unavailable (%v); periodic checks only", err)
		return changed
	}
	go func() {
		<-ctx.Done()
		mon.Close()
	}()
	go func() {
		for range events {
			select {
			case changed <- struct{}{}:
			default:
			}
		}
	}()
	return changed
}

// maxNewFlowLines caps the "would block" lines one poll logs; the rest
// are counted in one line (the report has them all).
const maxNewFlowLines = 20

// pollLocked merges the kernel's would-block record into the history and
// logs each flow the history did not have yet, once.
func (s *Service) pollLocked(now time.Time) error {
	rep, err := ruleset.ReadWouldBlock(s.conn, now)
	if err != nil {
		return err
	}
	changed := false
	var fresh []ruleset.Flow
	defer func() {
		s.logNewFlowsLocked(fresh)
		if changed {
			if err := s.saveHistoryLocked(); err != nil {
				s.logf("segment: %v", err)
			}
		}
	}()
	for _, r := range rep {
		k := r.Flow.String()
		prev := s.gen[k]
		dp, db := r.Packets-prev[0], r.Bytes-prev[1]
		if r.Packets < prev[0] { // element expired and came back
			dp, db = r.Packets, r.Bytes
		}
		s.gen[k] = [2]uint64{r.Packets, r.Bytes}
		if dp == 0 && db == 0 {
			continue
		}
		changed = true
		h, ok := s.hist[k]
		if !ok {
			fresh = append(fresh, r.Flow)
			c := r
			c.Packets, c.Bytes = 0, 0
			h = &c
			s.hist[k] = h
		}
		h.Packets += dp
		h.Bytes += db
		if r.FirstSeen.Before(h.FirstSeen) {
			h.FirstSeen = r.FirstSeen
		}
		if r.LastSeen.After(h.LastSeen) {
			h.LastSeen = r.LastSeen
		}
	}
	return nil
}

// logNewFlowsLocked logs new would-block flows, at most maxNewFlowLines,
// naming the monitor zone (of the destination, else of the source).
func (s *Service) logNewFlowsLocked(flows []ruleset.Flow) {
	if len(flows) == 0 {
		return
	}
	zone := map[string]string{}
	for _, a := range s.spec.Assets {
		if a.Mode == ruleset.ModeMonitor {
			zone[a.Address] = a.Zone
		}
	}
	for i, f := range flows {
		if i == maxNewFlowLines {
			s.logf("segment: would block: %d more new flows not logged (at most %d lines a poll; otgate segment report lists them all)",
				len(flows)-i, maxNewFlowLines)
			return
		}
		z, ok := zone[f.To]
		if !ok {
			z, ok = zone[f.From]
		}
		if !ok {
			z = "?" // the zone left the spec since the kernel saw the flow
		}
		s.logf("segment: would block (monitor zone %s): %s", z, f)
	}
}

// Report returns the would-have-blocked flows seen since the service started
// (including what the kernel had recorded before).
func (s *Service) Report() ([]ruleset.WouldBlock, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.pollLocked(s.now()); err != nil {
		return nil, err
	}
	var out []ruleset.WouldBlock
	for _, h := range s.hist {
		out = append(out, *h)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Flow.String() < out[j].Flow.String() })
	return out, nil
}

// Status is the service's state for the status socket.
type Status struct {
	Applied    time.Time                  `cbor:"1,keyasint" json:"applied"`
	Applies    int                        `cbor:"2,keyasint" json:"applies"`
	Drifts     int                        `cbor:"3,keyasint" json:"drifts"`
	Ruleset    string                     `cbor:"4,keyasint" json:"ruleset"`
	Exceptions []ruleset.ExceptionCounter `cbor:"5,keyasint" json:"exceptions"`
	Events     []Event                    `cbor:"6,keyasint" json:"events"`
	// Forwarding is the namespace's IPv4 forwarding switch as read now
	// ("on", "off" or the read error).
	Forwarding string `cbor:"7,keyasint" json:"ip_forwarding"`
	// Degraded names a standing failure while the ruleset is in force
	// (forwarding could not be set); "" when none.
	Degraded string `cbor:"8,keyasint,omitempty" json:"degraded,omitempty"`
	// PolicySHA256 is the SHA-256 of the site file whose applied policy the
	// ruleset in force was built from (SetPolicySpec, WithPolicySHA256);
	// zero for a ruleset from a spec file or the baseline alone. `otgate
	// site apply` waits for it to name the file it stored.
	PolicySHA256 [32]byte `cbor:"9,keyasint" json:"policy_sha256"`
}

// Status reports the last apply, the installed exceptions with their
// counters, and recent events.
func (s *Service) Status() (*Status, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	exc, err := ruleset.ReadExceptions(s.conn)
	if err != nil {
		return nil, err
	}
	for i, c := range exc {
		b := s.excBase[excKey(c)]
		exc[i].Packets, exc[i].Bytes = c.Packets+b[0], c.Bytes+b[1]
	}
	st := &Status{Applied: s.appliedT, Applies: s.applies, Drifts: s.drifts, Exceptions: exc,
		Events: append([]Event(nil), s.events...), PolicySHA256: s.policySHA}
	if s.desired != nil {
		st.Ruleset = s.desired.String()
	}
	if on, err := s.fwd.Get(); err != nil {
		st.Forwarding = "unknown: " + err.Error()
	} else {
		st.Forwarding = onOff(on)
	}
	if s.fwdErr != nil {
		st.Degraded = s.fwdErr.Error()
	}
	return st, nil
}

// Spec returns the spec the service enforces.
func (s *Service) Spec() *ruleset.Spec {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.spec
}

// SetSpec replaces the desired state and applies it at once, in one atomic
// replacement of the table (a policy reload). On error the kernel keeps the
// previous table and the service keeps enforcing the previous spec.
func (s *Service) SetSpec(spec *ruleset.Spec, why string) error {
	return s.SetPolicySpec(spec, [32]byte{}, why)
}

// SetPolicySpec is SetSpec for a spec built from an applied site policy:
// once the table is in force, Status names the policy by policySHA256 (its
// site file's SHA-256; zero for the baseline alone). On error both stay as
// they were.
func (s *Service) SetPolicySpec(spec *ruleset.Spec, policySHA256 [32]byte, why string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.spec
	s.spec = spec
	if err := s.applyLocked(why); err != nil {
		s.spec = old
		return err
	}
	s.policySHA = policySHA256
	return nil
}
