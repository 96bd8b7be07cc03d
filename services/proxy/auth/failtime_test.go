package auth

import (
	"sync"
	"testing"
	"time"
)

// A refused login that answers "wrong user name, password or code" takes
// a multiple of the name's minimum failure time whether the user exists
// (its failure is written to the store with an fsync) or not (no write):
// the duration must not tell the two apart. Refusals with their own
// message (malformed, locked) and successes are not padded.
func TestFailedLoginsArePaddedAlike(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxFailures = 100 })
	secret := e.add("alice")

	var mu sync.Mutex
	type pad struct {
		total   time.Duration
		elapsed time.Duration
	}
	var pads []pad
	real := e.s.waitUntil
	e.s.waitUntil = func(start time.Time, elapsed, d time.Duration) {
		// elapsed as padFailure measured it when it chose d: measured
		// here, later, it could pass d on a loaded machine.
		if now := time.Since(start); elapsed <= 0 || elapsed > now {
			t.Errorf("padding chosen after %v, but %v had passed since the start", elapsed, now)
		}
		mu.Lock()
		pads = append(pads, pad{d, elapsed})
		mu.Unlock()
		real(start, elapsed, d)
	}
	take := func() []pad {
		mu.Lock()
		defer mu.Unlock()
		p := pads
		pads = nil
		return p
	}
	check := func(what, user string, wantPadded bool) {
		t.Helper()
		p := take()
		if !wantPadded {
			if len(p) != 0 {
				t.Errorf("%s: padded %v, want no padding", what, p)
			}
			return
		}
		if len(p) != 1 {
			t.Fatalf("%s: %d paddings, want 1", what, len(p))
		}
		base := failureDelay(e.s.delayKey, user)
		if base < 5*time.Millisecond || base >= 9*time.Millisecond {
			t.Errorf("%s: base %v outside [5 ms, 9 ms)", what, base)
		}
		k := p[0].total / base
		if p[0].total%base != 0 || k&(k-1) != 0 {
			t.Errorf("%s: padded to %v, want %v times a power of two", what, p[0].total, base)
		}
		if p[0].total < p[0].elapsed || p[0].total >= 2*p[0].elapsed+2*base {
			t.Errorf("%s: padded to %v after %v, want the first step of %v*2^k not below it", what, p[0].total, p[0].elapsed, base)
		}
	}

	start := time.Now()
	e.s.Authenticate("mallory", []byte("guess"), "123456", srcA)
	if took := time.Since(start); took < failureDelay(e.s.delayKey, "mallory") {
		t.Errorf("an unknown user's refusal took %v, less than its minimum %v", took, failureDelay(e.s.delayKey, "mallory"))
	}
	check("unknown user", "mallory", true)
	e.s.Authenticate("alice", []byte("wrong"), "123456", srcA)
	check("wrong password", "alice", true)
	e.clock.Add(time.Minute)
	e.s.Authenticate("alice", []byte(testPassword), "000000", srcA)
	check("wrong code", "alice", true)
	e.s.Authenticate("alice", nil, "123456", srcA)
	check("malformed", "alice", false)
	e.clock.Add(time.Minute)
	e.mustLogin("alice", testPassword, e.oathtool(secret, 0), srcA)
	check("success", "alice", false)

}
