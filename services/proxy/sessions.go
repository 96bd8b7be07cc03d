package proxy

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/otgate/otgate/inspect/modbus"
)

// End reasons recorded in session-end records.
const (
	EndClientClosed = "client closed"
	EndAssetClosed  = "asset closed"
	EndIdle         = "idle timeout"
	EndUntil        = "decision expired"
	EndRevoked      = "credential revoked"
	EndPolicy       = "policy reload"
	EndShutdown     = "gate shutting down"
	// EndQuarantine prefixes the identity service's reason when the gate
	// went into quarantine while the proxy ran.
	EndQuarantine = "gate in quarantine"
)

// session is one live tunnel.
type session struct {
	id       string
	user     string
	roles    []string
	serial   string
	asset    string
	protocol string
	source   netip.Addr
	// rule is the grant that governs the session: the one that admitted
	// it, then each that took it over at the end of the one before
	// (handover.go). Guarded by mu once registered.
	rule string
	// monitor: the asset's zone is in monitor mode, in which the Modbus
	// inspector passes what its rules deny, recorded as would-deny (the
	// relay reads it for each request; a reload may switch it).
	monitor atomic.Bool
	// modbusRules are the Modbus rules in force (the relay reads them for
	// each request): the governing grant's.
	modbusRules atomic.Pointer[modbus.Policy]
	started     time.Time
	until       time.Time // guarded by mu once registered (a reload moves it)
	// ruleUntil is what the deciding rule allowed (zero: no end); the
	// end reason names it when it is what ends the session. Guarded by mu.
	ruleUntil time.Time
	chain     [][]byte // the client certificate chain, re-verified on revocation
	certEnd   time.Time
	timer     *time.Timer    // ends the session at until; guarded by mu
	handover  *time.Timer    // hands it to the next grant (handover.go); guarded by mu
	untilWhy  string         // the end reason at until; guarded by mu
	note      sessionNotices // its notices (notices.go); guarded by mu
	// done: the session is over (its tunnel has returned, or its
	// admission was discarded): its timers are stopped and none is armed
	// again (a reload that took its snapshot before may still call
	// setUntil). Guarded by mu.
	done bool

	toAsset, toClient atomic.Uint64
	lastActive        atomic.Int64 // unix ns

	endOnce   sync.Once
	endReason string
	ended     chan struct{}
	closeConn func() // closes both connections; set before the relay starts
	mu        sync.Mutex
}

func newSessionID() string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("proxy: crypto/rand: %v", err))
	}
	return hex.EncodeToString(b[:])
}

// end ends the session for reason; the first reason wins.
func (s *session) end(reason string) {
	if reason == "" {
		reason = "ended" // endedWith and attach tell an end by its reason
	}
	s.endOnce.Do(func() {
		s.mu.Lock()
		s.endReason = reason
		c := s.closeConn
		s.mu.Unlock()
		close(s.ended)
		if c != nil {
			c()
		}
	})
}

// endedWith reports whether the session has ended, and why.
func (s *session) endedWith() (string, bool) {
	r := s.reason("")
	return r, r != ""
}

// attach sets what end closes (the session's connections), unless the
// session has ended already: then it sets nothing and returns the end's
// reason. Under s.mu, as end reads closeConn, so an end either sees the
// connections or is seen here.
func (s *session) attach(closeConn func()) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.endReason != "" {
		return s.endReason, true
	}
	s.closeConn = closeConn
	return "", false
}

// reason returns the recorded end reason, or def if none was set.
func (s *session) reason(def string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.endReason != "" {
		return s.endReason
	}
	return def
}

func (s *session) touch(now int64) { s.lastActive.Store(now) }

// SessionInfo describes a live session (admin list).
type SessionInfo struct {
	ID, User, Serial, Asset, Protocol, Source, Rule string
	Monitor                                         bool // the asset's zone is in monitor mode
	Started, Until                                  time.Time
	BytesToAsset, BytesToClient                     uint64
	Idle                                            time.Duration
}

// registry holds the live sessions and enforces the limits.
type registry struct {
	mu      sync.Mutex
	all     map[string]*session
	perUser map[string]int
	max     int
	maxUser int
}

func newRegistry(max, maxUser int) *registry {
	return &registry{all: map[string]*session{}, perUser: map[string]int{}, max: max, maxUser: maxUser}
}

// add admits s or says why not.
func (r *registry) add(s *session) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.all) >= r.max {
		return fmt.Errorf("gate session limit reached (%d live sessions)", r.max)
	}
	if r.perUser[s.user] >= r.maxUser {
		return fmt.Errorf("session limit of user %q reached (%d live sessions)", s.user, r.maxUser)
	}
	r.all[s.id] = s
	r.perUser[s.user]++
	return nil
}

func (r *registry) remove(s *session) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.all[s.id]; !ok {
		return
	}
	delete(r.all, s.id)
	if r.perUser[s.user]--; r.perUser[s.user] <= 0 {
		delete(r.perUser, s.user)
	}
}

// snapshot returns the live sessions sorted by start time.
func (r *registry) snapshot() []*session {
	r.mu.Lock()
	out := make([]*session, 0, len(r.all))
	for _, s := range r.all {
		out = append(out, s)
	}
	r.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].started.Before(out[j].started) })
	return out
}

func (r *registry) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.all)
}

// setUntil (re)arms the end of the session at until (zero: none);
// ruleUntil is what the deciding rule allowed (zero: no end), which the
// end reason names when it is what ends the session.
func (s *session) setUntil(until, ruleUntil, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.setUntilLocked(until, ruleUntil, now)
}

// arm arms the end timer at the session's end. Admission calls it before
// the session is registered (a reload may move the end from then on,
// setUntil), so a window that ends while the start record is written or
// the asset dialled ends the session then; every path that discards the
// admission calls finish, which stops the timer. Nothing is announced on
// the notice streams before the client is told it is accepted (accept).
func (s *session) arm(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.setUntilLocked(s.until, s.ruleUntil, now)
}

// accept marks the session accepted (the client has its accept reply):
// its deadline is announced on the notice streams and the warning armed,
// at the end a reload may have moved since the admission.
func (s *session) accept(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.note.accepted = true
	s.noticeDeadline(s.until, now)
}

// finish stops the session's timers (its end, its warning) for good:
// called once its tunnel has returned or its admission was discarded.
// After it no timer is armed and no notice is sent about the session.
func (s *session) finish() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.done = true
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	if s.handover != nil {
		s.handover.Stop()
		s.handover = nil
	}
	sn := &s.note
	sn.finished = true
	if sn.warn != nil {
		sn.warn.Stop()
		sn.warn = nil
	}
}

func (s *session) setUntilLocked(until, ruleUntil, now time.Time) {
	s.until, s.ruleUntil = until, ruleUntil
	s.untilWhy = ""
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	if !until.IsZero() {
		why := s.untilReason(until, ruleUntil)
		s.untilWhy = why
		if !s.done {
			s.timer = time.AfterFunc(until.Sub(now), func() { s.end(why) })
		}
	}
	s.noticeDeadline(until, now)
}

// untilReason is the recorded end reason of a session that reaches its
// deadline until: EndUntil, then what the deadline was: the end of what
// the rule allowed (its time window, a maintenance window, an exception's
// expiry) or else the client certificate's end.
func (s *session) untilReason(until, ruleUntil time.Time) string {
	at := until.Format(time.RFC3339)
	if !ruleUntil.IsZero() && !ruleUntil.After(until) {
		return fmt.Sprintf("%s: rule %q allowed it until %s", EndUntil, s.rule, at)
	}
	return fmt.Sprintf("%s: the client certificate that opened it ended at %s", EndUntil, at)
}

// pastUntil reports whether the session's deadline has passed at now, by
// the wall clock, with the end reason. The timer setUntil arms runs on
// the monotonic clock, which stands still while the machine or VM is
// suspended, and knows nothing of a clock set forward: the sweep asks
// this every second as well.
func (s *session) pastUntil(now time.Time) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.until.IsZero() || now.Round(0).Before(s.until.Round(0)) {
		return "", false
	}
	if s.untilWhy != "" {
		return s.untilWhy, true
	}
	return fmt.Sprintf("%s at %s", EndUntil, s.until.Format(time.RFC3339)), true
}

func (s *session) stopTimer() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.timer != nil {
		s.timer.Stop()
	}
}

// request is the decision request that re-decides the session at at.
func (s *session) request(at time.Time) DecisionRequest {
	return DecisionRequest{User: s.user, Roles: s.roles, Asset: s.asset, Protocol: s.protocol, Source: s.source, Time: at}
}

// ruleName is the grant that governs the session now.
// decision is what the session runs under now: allowed by its governing
// rule, in its zone's mode, with the Modbus rules in force.
func (s *session) decision() Decision {
	return Decision{Allow: true, Rule: s.ruleName(), Monitor: s.monitor.Load(), Modbus: s.modbusRules.Load()}
}

func (s *session) ruleName() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rule
}

func (s *session) untilTime() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.until
}
