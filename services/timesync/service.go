package timesync

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/beevik/ntp"

	"github.com/otgate/otgate/internal/atomicfile"
	"github.com/otgate/otgate/services/netconf"
	"github.com/otgate/otgate/site"
)

// Defaults of the service's settings.
const (
	DefaultPollMin        = 64 * time.Second
	DefaultPollMax        = 1024 * time.Second
	DefaultRetryMin       = 8 * time.Second
	DefaultRetryMax       = 256 * time.Second
	DefaultTimeout        = 5 * time.Second
	DefaultStepThreshold  = 500 * time.Millisecond
	DefaultPanicThreshold = 1000 * time.Second
	DefaultRTCInterval    = time.Hour
	// DefaultMarker records that the clock was synchronised this boot
	// (/run is a tmpfs: a reboot forgets it, a service restart does not).
	DefaultMarker = "/run/otgate/timesync/synced"
	// steadyOffset: a poll that corrects less than this lets the poll
	// interval grow.
	steadyOffset = 128 * time.Millisecond
)

// Action is what a poll did to the clock.
type Action string

// Actions of a poll.
const (
	ActionIdle    Action = "idle"    // no servers configured
	ActionFailed  Action = "failed"  // no usable offset
	ActionStepped Action = "stepped" // first sync of the boot, offset above the step threshold
	ActionSlewed  Action = "slewed"
	ActionRefused Action = "refused" // synced already and the offset is above the panic threshold
)

// Result is one poll's outcome.
type Result struct {
	Servers []string
	Samples []Sample
	Offset  time.Duration
	Used    []string
	Action  Action
	Err     error
	// Before and After are the clock's readings around the correction.
	Before, After time.Time
	// Next is when the service polls again.
	Next time.Duration
}

// Service is the time service. Set the fields, then Run (or Poll).
type Service struct {
	// PolicyPath is the applied site policy whose uplink.nts or
	// uplink.ntp names the servers, read at every poll.
	PolicyPath string
	// Servers, when set, are used instead of the policy's (development;
	// "host" or "host:port").
	Servers []string
	// LeaseNTP, when set, returns the NTP servers of the uplink's DHCP
	// lease (option 42; netconf's status on the gate), used when the
	// policy names none. An error or none: no servers.
	LeaseNTP func(ctx context.Context) ([]string, error)
	// Clock is the clock corrected (SystemClock on the gate; tests inject
	// theirs).
	Clock Clock
	// Dial opens the UDP socket of a query (nil: the library's).
	Dial func(localAddress, remoteAddress string) (net.Conn, error)
	// DialKE opens the TCP connection of an NTS key exchange (nil:
	// net.Dialer).
	DialKE func(network, address string) (net.Conn, error)
	// RTC is the hardware clock device ("": none kept).
	RTC string
	// Marker is the file that says this boot's clock was synchronised
	// ("": remembered in memory only).
	Marker string
	// Approval is where an administrator's approval of one step past
	// the panic threshold is found ("": none; see approval.go).
	Approval string
	// ClockFile keeps the clock's floor, the last time the gate knew
	// was right, across boots ("": no floor at all; see floor.go).
	ClockFile string

	PollMin, PollMax, RetryMin, RetryMax     time.Duration
	Timeout                                  time.Duration
	StepThreshold, PanicThreshold, Agreement time.Duration
	RTCInterval                              time.Duration
	// ClockFileInterval: the clock file is rewritten at most this often
	// while synchronised (flash).
	ClockFileInterval time.Duration

	Logf func(format string, args ...any)
	// Status receives the one-line state for init's status table.
	Status func(note string)

	once     sync.Once
	synced   bool
	poll     time.Duration
	retry    time.Duration
	rtcAt    time.Time // monotonic: last hardware clock write
	rtcGone  bool
	source   string // last logged description of the servers' source
	refusals int
	// floor: before the first sync, no time before it is taken (floor.go);
	// floorFrom says where it came from, floorAt (monotonic) when the
	// clock file was last written; floorHit: this poll refused a server
	// because of it; floorRefused: the last poll failed that way.
	floor        time.Time
	floorFrom    string
	floorAt      time.Time
	floorHit     atomic.Bool
	floorRefused bool
	floorSet     string // the clock was set forward to the floor at start: to what
	// guard is the floor below which no server is taken before the first
	// sync: the file's time when an NTS sync wrote it, else the build
	// floor (floor.go); guardFrom says which.
	guard     time.Time
	guardFrom string
	floorUsed string // the servers of the last clock file written
	// NTS servers' sessions by host:port, for the CA whose digest is
	// ntsCA (nts.go).
	peers map[string]*ntsPeer
	ntsCA string
}

func (s *Service) init() {
	s.once.Do(func() {
		def := func(d *time.Duration, v time.Duration) {
			if *d <= 0 {
				*d = v
			}
		}
		def(&s.PollMin, DefaultPollMin)
		def(&s.PollMax, DefaultPollMax)
		def(&s.RetryMin, DefaultRetryMin)
		def(&s.RetryMax, DefaultRetryMax)
		def(&s.Timeout, DefaultTimeout)
		def(&s.StepThreshold, DefaultStepThreshold)
		def(&s.PanicThreshold, DefaultPanicThreshold)
		def(&s.Agreement, DefaultAgreement)
		def(&s.RTCInterval, DefaultRTCInterval)
		def(&s.ClockFileInterval, DefaultClockFileInterval)
		if s.PollMax < s.PollMin {
			s.PollMax = s.PollMin
		}
		if s.RetryMax < s.RetryMin {
			s.RetryMax = s.RetryMin
		}
		if s.Clock == nil {
			s.Clock = SystemClock{}
		}
		if s.Logf == nil {
			s.Logf = func(string, ...any) {}
		}
		if s.Status == nil {
			s.Status = func(string) {}
		}
		s.poll = s.PollMin
		if s.Marker != "" {
			if b, err := os.ReadFile(s.Marker); err == nil {
				s.synced = true
				s.Logf("timesync: the clock was synchronised earlier this boot (%s: %s): only slewing from now on", s.Marker, strings.TrimSpace(string(b)))
			}
		}
		if !s.synced {
			s.loadFloor()
		}
	})
}

// Synced says whether the clock was synchronised this boot.
func (s *Service) Synced() bool { s.init(); return s.synced }

// Run polls until ctx ends; a value on now polls at once.
func (s *Service) Run(ctx context.Context, now <-chan struct{}) error {
	s.init()
	for {
		r := s.Poll(ctx)
		t := time.NewTimer(r.Next)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-now:
			t.Stop()
		case <-t.C:
		}
	}
}

// servers returns the servers to query and a description of where they
// come from: the flags, else the site file's uplink.nts (returned as
// nts; those only: no plain NTP then, not even the lease's), else its
// uplink.ntp, else the DHCP lease's (LeaseNTP) - the lease's only when
// no policy is applied or it names none, never when it cannot be read.
func (s *Service) servers(ctx context.Context) ([]string, *site.NTS, string) {
	if len(s.Servers) > 0 {
		return s.Servers, nil, "from the flags"
	}
	why := ""
	var applied *site.Site // the policy the lease's servers are checked against
	if s.PolicyPath == "" {
		why = "no site policy given"
	} else {
		a, err := site.LoadApplied(s.PolicyPath)
		switch {
		case errors.Is(err, site.ErrNoPolicy):
			why = "no applied site policy yet"
		case err != nil:
			// It may name NTS servers: the lease's plain NTP servers
			// would be the downgrade uplink.nts rules out (a damaged
			// file, or after a rollback one a newer build wrote). No
			// servers until it is readable again.
			return nil, nil, fmt.Sprintf("site policy unreadable: %v; the DHCP lease's servers are not used instead (the policy may name NTS servers)", err)
		default:
			u := a.Site.UplinkSettings()
			if u.NTS != nil {
				return u.NTS.Servers, u.NTS, "from the site file's uplink.nts (NTS-authenticated; plain NTP is not used)"
			}
			if len(u.NTP) > 0 {
				return u.NTP, nil, "from the site file's uplink.ntp"
			}
			why = "the site file's uplink.ntp names none"
			applied = &a.Site
		}
	}
	if s.LeaseNTP == nil {
		return nil, nil, why
	}
	lease, err := s.LeaseNTP(ctx)
	switch {
	case err != nil:
		return nil, nil, fmt.Sprintf("%s; the DHCP lease's cannot be read: %v", why, err)
	case len(lease) == 0:
		return nil, nil, why + " and the DHCP lease has none"
	}
	lease, dropped := uplinkSide(lease, applied)
	if len(dropped) > 0 {
		why += "; " + strings.Join(dropped, "; ")
	}
	if len(lease) == 0 {
		return nil, nil, why
	}
	return lease, nil, "from the DHCP lease (option 42; " + why + ")"
}

// uplinkSide keeps the DHCP lease's servers that the site file would
// take in its uplink.ntp (site validateNTP): the gate takes its time
// from the uplink side only, so not from an address in a zone's subnet
// (an OT device) or the overlay prefix (site.Site.OTSide); a lease is
// unauthenticated, and must not name what the site file cannot. It
// returns why the others are not used.
func uplinkSide(servers []string, st *site.Site) (keep, dropped []string) {
	// st is nil before the first policy: OTSide then still knows the
	// default overlay prefix, as netconf's lease check does.
	for _, srv := range servers {
		why, ot := "", false
		if a, err := netip.ParseAddr(srv); err == nil {
			why, ot = st.OTSide(a)
		}
		if !ot {
			keep = append(keep, srv)
			continue
		}
		dropped = append(dropped, fmt.Sprintf("NTP server %s of the DHCP lease is %s: not used (the gate takes its time from the uplink side only)", srv, why))
	}
	return keep, dropped
}

// Poll queries the servers once and corrects the clock by what they
// agree on.
func (s *Service) Poll(ctx context.Context) Result {
	s.init()
	servers, ntsConf, source := s.servers(ctx)
	if desc := source + " " + strings.Join(servers, " "); desc != s.source {
		s.source = desc
		if len(servers) == 0 {
			// Said once (again only when the source changes).
			s.Logf("timesync: no NTP servers configured (%s): the clock is not synchronised", source)
		} else {
			s.Logf("timesync: servers %s: %s", source, strings.Join(servers, ", "))
		}
	}
	if len(servers) == 0 {
		s.Status(fmt.Sprintf("not synchronised: no NTP servers configured (%s)%s", source, s.floorNote()))
		// Before the first sync of the boot, look again soon: at boot
		// the DHCP lease that names the servers is usually seconds away.
		next := s.PollMin
		if !s.synced {
			next = s.RetryMin
		}
		return Result{Action: ActionIdle, Next: next}
	}
	r := Result{Servers: servers}
	s.liftFloor()
	s.floorHit.Store(false)
	if ntsConf != nil {
		peers, err := s.ntsPeers(ntsConf)
		if err != nil {
			return s.failed(r, err)
		}
		r.Samples = s.queryNTS(ctx, peers)
	} else {
		s.peers, s.ntsCA = nil, ""
		r.Samples = s.query(ctx, servers)
	}
	s.belowFloor(r.Samples)
	r.Offset, r.Used, r.Err = Select(r.Samples, s.Agreement)
	if r.Err != nil {
		return s.failed(r, fmt.Errorf("%w (%s)", r.Err, describe(r.Samples)))
	}
	used := describe(r.Samples)
	first := !s.synced
	r.Before = s.Clock.Now()
	switch {
	case first && absDur(r.Offset) > s.StepThreshold:
		if err := s.Clock.Step(r.Offset); err != nil {
			return s.failed(r, err)
		}
		r.Action, r.After = ActionStepped, s.Clock.Now()
		s.Logf("timesync: stepped the clock by %s: %s -> %s (first sync of this boot; servers %s)",
			signed(r.Offset), stamp(r.Before), stamp(r.After), used)
	case !first && absDur(r.Offset) > s.PanicThreshold && s.approved(&r, used):
		if r.Err != nil {
			return s.failed(r, r.Err)
		}
	case !first && absDur(r.Offset) > s.PanicThreshold:
		r.Action = ActionRefused
		s.refusals++
		r.Err = fmt.Errorf("offset %s is above the panic threshold %s", signed(r.Offset), secs(s.PanicThreshold))
		suspect := "plain NTP is unauthenticated: a forged or broken server on the uplink?"
		if ntsConf != nil {
			suspect = "the replies are NTS-authenticated: a broken or compromised server?"
		}
		s.Logf("timesync: REFUSED: the servers say the clock is off by %s, more than the panic threshold %s, and it was synchronised this boot: NOT applied (%s `otgate time step` on the gate, or a reboot, allows one step; refusal %d; servers %s; clock %s)",
			signed(r.Offset), secs(s.PanicThreshold), suspect, s.refusals, used, stamp(r.Before))
		s.Status(fmt.Sprintf("REFUSED offset %s from %s (panic threshold %s; synchronised earlier this boot) at %s", signed(r.Offset), strings.Join(r.Used, " "), secs(s.PanicThreshold), stamp(r.Before)))
		s.retry = s.nextRetry()
		r.Next = s.retry
		return r
	default:
		if err := s.Clock.Slew(r.Offset, s.poll); err != nil {
			return s.failed(r, err)
		}
		r.Action, r.After = ActionSlewed, r.Before
		how := ""
		if absDur(r.Offset) > pllMax {
			how = fmt.Sprintf(", at 500 ppm: about %s", (absDur(r.Offset) * 2000).Round(time.Second))
		}
		s.Logf("timesync: slewing the clock by %s%s at %s (servers %s)", signed(r.Offset), how, stamp(r.Before), used)
	}
	s.refusals = 0
	s.retry = 0
	s.floorRefused = false
	if first {
		s.synced = true
		s.mark(r)
	}
	if r.Action == ActionStepped || absDur(r.Offset) > steadyOffset {
		s.poll = s.PollMin
	} else if !first {
		s.poll = min(2*s.poll, s.PollMax)
	}
	r.Next = s.poll
	s.keepRTC(first || r.Action == ActionStepped)
	from := slices.Clone(r.Used)
	if ntsConf != nil {
		for i := range from {
			from[i] = "nts " + from[i]
		}
	}
	s.saveFloor(first || r.Action == ActionStepped, strings.Join(from, ", "))
	s.Status(fmt.Sprintf("synchronised: %s by %s at %s (%s); next poll in %s", r.Action, signed(r.Offset), stamp(s.Clock.Now()), used, r.Next))
	return r
}

// failed records a poll that corrected nothing.
func (s *Service) failed(r Result, err error) Result {
	r.Action, r.Err = ActionFailed, err
	s.retry = s.nextRetry()
	r.Next = s.retry
	s.Logf("timesync: no sync: %v; retry in %s", err, r.Next)
	state := "not synchronised"
	if s.synced {
		state = "synchronised earlier this boot, now"
	}
	s.floorRefused = !s.synced && s.floorHit.Load()
	if s.floorRefused {
		// `otgate time step` approves what a status "REFUSED" names.
		state = fmt.Sprintf("REFUSED below the floor %s (%s): not synchronised", stamp(s.guard), s.guardFrom)
	}
	s.Status(fmt.Sprintf("%s: %v; retry in %s%s", state, err, r.Next, s.floorNote()))
	return r
}

func (s *Service) nextRetry() time.Duration {
	if s.retry == 0 {
		return s.RetryMin
	}
	return min(2*s.retry, s.RetryMax)
}

// mark remembers for the rest of the boot that the clock was
// synchronised.
func (s *Service) mark(r Result) {
	if s.Marker == "" {
		return
	}
	line := fmt.Sprintf("%s %s by %s from %s\n", stamp(s.Clock.Now()), r.Action, signed(r.Offset), strings.Join(r.Used, " "))
	err := os.MkdirAll(filepath.Dir(s.Marker), 0o755)
	if err == nil {
		err = atomicfile.Write(s.Marker, []byte(line), 0o644)
	}
	if err != nil {
		s.Logf("timesync: remember the sync in %s: %v (a restart of this service could step the clock again)", s.Marker, err)
	}
}

// keepRTC writes the hardware clock after a step or the first sync
// (now) and then every RTCInterval while synchronised.
func (s *Service) keepRTC(now bool) {
	if s.RTC == "" || s.rtcGone {
		return
	}
	if !now && !s.rtcAt.IsZero() && time.Since(s.rtcAt) < s.RTCInterval {
		return
	}
	t := s.Clock.Now()
	err := WriteRTC(s.RTC, t)
	s.rtcAt = time.Now()
	switch {
	case errors.Is(err, os.ErrNotExist):
		s.rtcGone = true
		s.Logf("timesync: no hardware clock (%s): the next boot starts from whatever time the board keeps", s.RTC)
	case err != nil:
		s.Logf("timesync: hardware clock: %v", err)
	default:
		back := ""
		if rt, err := ReadRTC(s.RTC); err == nil {
			back = ", reads back " + rt.Format(time.RFC3339)
		}
		s.Logf("timesync: hardware clock %s set to %s UTC%s", s.RTC, t.UTC().Format(time.RFC3339), back)
	}
}

// query asks every server at once.
func (s *Service) query(ctx context.Context, servers []string) []Sample {
	out := make([]Sample, len(servers))
	var wg sync.WaitGroup
	for i, srv := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = s.queryOne(ctx, srv)
		}()
	}
	wg.Wait()
	return out
}

func (s *Service) queryOne(ctx context.Context, server string) Sample {
	smp := Sample{Server: server}
	if err := ctx.Err(); err != nil {
		smp.Err = err
		return smp
	}
	opt := ntp.QueryOptions{Timeout: s.Timeout, GetSystemTime: s.Clock.Now}
	if s.Dial != nil {
		opt.Dialer = s.Dial
	}
	r, err := ntp.QueryWithOptions(server, opt)
	if err != nil {
		smp.Err = err
		return smp
	}
	fill(&smp, r)
	return smp
}

// fill records a reply in smp, and why it is not used if it fails the
// library's Validate.
func fill(smp *Sample, r *ntp.Response) {
	smp.Offset, smp.RTT, smp.Stratum = r.ClockOffset, r.RTT, r.Stratum
	if err := r.Validate(); err != nil {
		if r.IsKissOfDeath() && r.KissCode != "" {
			err = fmt.Errorf("%w (%s)", err, r.KissCode)
		}
		smp.Err = fmt.Errorf("invalid reply: %w (stratum %d, leap %s, root distance %s)", err, r.Stratum, leapName(r.Leap), r.RootDistance.Round(time.Millisecond))
	}
}

func leapName(l ntp.LeapIndicator) string {
	switch l {
	case ntp.LeapNoWarning:
		return "0"
	case ntp.LeapAddSecond:
		return "1 (second added today)"
	case ntp.LeapDelSecond:
		return "2 (second removed today)"
	}
	return "3 (server not synchronised)"
}

// secs formats a threshold in seconds: "1000s", "0.5s".
func secs(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) + "s" }

// stamp formats a clock reading for the log.
func stamp(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

// NetconfLease returns a LeaseNTP that asks the netconf service at socket
// for its status and returns the NTP servers of the uplink's DHCP lease
// (none for a static uplink or while no lease is held).
func NetconfLease(socket string) func(ctx context.Context) ([]string, error) {
	return func(ctx context.Context) ([]string, error) {
		ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		rsp, err := netconf.Query(ctx, socket, netconf.Request{Op: netconf.OpStatus})
		switch {
		case err != nil:
			return nil, err
		case rsp.Error != "":
			return nil, fmt.Errorf("netconf: %s", rsp.Error)
		case rsp.Status == nil:
			return nil, fmt.Errorf("netconf: status answer without a status")
		}
		d := rsp.Status.Uplink.DHCP
		if d == nil || d.Lease == nil {
			return nil, nil
		}
		out := make([]string, 0, len(d.Lease.NTP))
		for _, a := range d.Lease.NTP {
			out = append(out, a.String())
		}
		return out, nil
	}
}

// approved steps the clock by r.Offset when an administrator approved it
// (takeApproval): the one way past the panic threshold in a boot. It
// reports whether an approval was found; a failed step is r.Err.
func (s *Service) approved(r *Result, used string) bool {
	by, ok := s.takeApproval()
	if !ok {
		return false
	}
	if err := s.Clock.Step(r.Offset); err != nil {
		r.Err = err
		return true
	}
	r.Action, r.After = ActionStepped, s.Clock.Now()
	s.Logf("timesync: STEPPED the clock by %s past the panic threshold %s, approved by %s (otgate time step): %s -> %s (servers %s)",
		signed(r.Offset), secs(s.PanicThreshold), by, stamp(r.Before), stamp(r.After), used)
	return true
}
