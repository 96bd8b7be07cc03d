package auth

import (
	"net/netip"
	"sync"
	"time"
)

// SourceLimit bounds failed logins from one source address: a token
// bucket of Burst failures refilled by one every Every. While the bucket
// is empty every attempt from the source is refused before any check.
// IPv6 sources count per /64, as one host usually owns one.
type SourceLimit struct {
	Burst int
	Every time.Duration
}

// DefaultSourceLimit allows 10 failures at once, then one every 30 s.
var DefaultSourceLimit = SourceLimit{Burst: 10, Every: 30 * time.Second}

// maxSources bounds the table; full buckets are dropped first.
const maxSources = 10000

type bucket struct {
	tokens float64
	at     time.Time
}

type sourceLimiter struct {
	lim SourceLimit
	mu  sync.Mutex
	m   map[netip.Prefix]*bucket
}

func newSourceLimiter(l SourceLimit) *sourceLimiter {
	return &sourceLimiter{lim: l, m: map[netip.Prefix]*bucket{}}
}

func sourceKey(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	bits := 32
	if a.Is6() {
		bits = 64
	}
	p, err := a.Prefix(bits)
	if err != nil { // invalid address: all of them share one bucket
		return netip.Prefix{}
	}
	return p
}

func (l *sourceLimiter) refill(b *bucket, now time.Time) {
	if now.After(b.at) {
		b.tokens += float64(now.Sub(b.at)) / float64(l.lim.Every)
		if max := float64(l.lim.Burst); b.tokens > max {
			b.tokens = max
		}
	}
	b.at = now
}

// take takes one token from source's bucket for an attempt about to be
// checked, or, when the bucket has less than one, takes nothing and
// says how long until it has. The token is taken before the attempt's
// password hash runs, not after it fails: concurrent attempts from one
// source each need their own, so at most Burst are ever checked at once
// (with a check-then-charge limiter every attempt started before the
// first failure lands would pass). An attempt that does not fail gives
// its token back (refund).
func (l *sourceLimiter) take(src netip.Addr, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := sourceKey(src)
	b := l.m[k]
	if b == nil {
		if len(l.m) >= maxSources {
			l.prune(now)
		}
		b = &bucket{tokens: float64(l.lim.Burst), at: now}
		l.m[k] = b
	}
	l.refill(b, now)
	if b.tokens < 1 {
		return false, time.Duration((1 - b.tokens) * float64(l.lim.Every))
	}
	b.tokens--
	return true, 0
}

// refund gives back the token of an attempt that did not fail: it
// succeeded, or was refused for something other than a wrong name,
// password or code.
func (l *sourceLimiter) refund(src netip.Addr, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.m[sourceKey(src)]
	if b == nil {
		return
	}
	l.refill(b, now)
	b.tokens = min(b.tokens+1, float64(l.lim.Burst))
}

// prune drops the buckets that have refilled (they hold no information).
func (l *sourceLimiter) prune(now time.Time) {
	for k, b := range l.m {
		l.refill(b, now)
		if b.tokens >= float64(l.lim.Burst) {
			delete(l.m, k)
		}
	}
}

// UserBackoff is the delay forced between failed logins of one user:
// Base after the first failure, doubling with each consecutive failure, at
// most Max. Attempts inside the delay are refused without checking
// anything and do not count as failures.
type UserBackoff struct {
	Base time.Duration
	Max  time.Duration
}

// DefaultUserBackoff: 1 s, 2 s, 4 s, ... at most 5 min.
var DefaultUserBackoff = UserBackoff{Base: time.Second, Max: 5 * time.Minute}

// delay after n consecutive failures.
func (b UserBackoff) delay(n int) time.Duration {
	if n <= 0 || b.Base <= 0 {
		return 0
	}
	d := b.Base
	for i := 1; i < n && d < b.Max; i++ {
		d *= 2
	}
	if d > b.Max {
		d = b.Max
	}
	return d
}

// unknownNames applies the per-user back-off to names that are not users,
// so that a throttled refusal does not reveal which names exist.
type unknownNames struct {
	mu sync.Mutex
	m  map[string]*unknownName
}

type unknownName struct {
	failures int
	last     time.Time
}

func (u *unknownNames) wait(name string, b UserBackoff, now time.Time) (time.Duration, int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	e := u.m[name]
	if e == nil {
		return 0, 0
	}
	if until := e.last.Add(b.delay(e.failures)); now.Before(until) {
		return until.Sub(now), e.failures
	}
	return 0, e.failures
}

func (u *unknownNames) fail(name string, b UserBackoff, now time.Time) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.m == nil {
		u.m = map[string]*unknownName{}
	}
	if len(u.m) >= maxSources {
		for k, e := range u.m {
			if now.Sub(e.last) > b.Max {
				delete(u.m, k)
			}
		}
		if len(u.m) >= maxSources { // still full: forget everything
			clear(u.m)
		}
	}
	e := u.m[name]
	if e == nil {
		e = &unknownName{}
		u.m[name] = e
	}
	e.failures++
	e.last = now
	return e.failures
}
