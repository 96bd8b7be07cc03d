package auth

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

func TestEnrolmentConfirmedByFirstLogin(t *testing.T) {
	e := newEnv(t, nil)
	secret := e.add("alice")
	if u, _ := e.s.User("alice"); !u.Pending {
		t.Fatal("new user is not pending")
	}
	l := e.mustLogin("alice", testPassword, e.oathtool(secret, 0), srcA)
	if !l.Confirmed || l.User != "alice" || !slices.Equal(l.Roles, []string{"engineer"}) || l.Generation == 0 {
		t.Errorf("first login: %+v; want confirmed, roles [engineer]", l)
	}
	if u, _ := e.s.User("alice"); u.Pending || u.LastLogin != e.clock.Now() {
		t.Errorf("after first login: %+v", u)
	}
	e.clock.Add(30 * time.Second)
	if l := e.mustLogin("alice", testPassword, e.oathtool(secret, 0), srcA); l.Confirmed {
		t.Error("second login also reports a confirmation")
	}
	want := []string{"user-added", "enrolment-confirmed", "login", "login"}
	if got := e.ev.kinds(); !slices.Equal(got, want) {
		t.Errorf("events %v, want %v", got, want)
	}
}

func TestRefusalReasons(t *testing.T) {
	e := newEnv(t, nil)
	secret := e.add("alice")
	code := e.oathtool(secret, 0)
	r1 := e.mustRefuse("mallory", testPassword, code, srcA, ReasonUnknownUser)
	// An unknown name is throttled like a user: a throttled refusal does
	// not tell that alice exists and mallory does not.
	rm := e.mustRefuse("mallory", testPassword, code, srcA, ReasonThrottled)
	if !rm.UnknownUser || rm.RetryAfter != time.Second || e.ev.last().Detail != "unknown user" {
		t.Errorf("throttled unknown user: %+v, event %+v", rm, e.ev.last())
	}
	e.clock.Add(time.Minute)
	code = e.oathtool(secret, 0)
	r2 := e.mustRefuse("alice", "wrong password!!", code, srcA, ReasonBadPassword)
	e.clock.Add(time.Minute)
	wrong := e.oathtool(secret, 5*time.Minute) // a real code, of another time
	r3 := e.mustRefuse("alice", testPassword, wrong, srcA, ReasonBadCode)
	e.clock.Add(time.Minute)
	e.mustRefuse("alice", testPassword, "12345", srcA, ReasonBadCode)
	e.mustRefuse("alice", "", "123456", srcA, ReasonMalformed)
	// The client cannot tell these apart.
	if r1.ClientMessage() != r2.ClientMessage() || r2.ClientMessage() != r3.ClientMessage() {
		t.Errorf("client messages differ: %q / %q / %q", r1.ClientMessage(), r2.ClientMessage(), r3.ClientMessage())
	}
	// The audit log can.
	var reasons []Reason
	for _, ev := range e.ev.events {
		if ev.Kind == EventLoginFailed {
			reasons = append(reasons, ev.Reason)
		}
	}
	want := []Reason{ReasonUnknownUser, ReasonThrottled, ReasonBadPassword, ReasonBadCode, ReasonBadCode, ReasonMalformed}
	if !slices.Equal(reasons, want) {
		t.Errorf("audit reasons %v, want %v", reasons, want)
	}
	if ev := e.ev.last(); ev.Source != srcA || ev.User != "alice" {
		t.Errorf("event without user/source: %+v", ev)
	}
}

func TestReplayedCodeRefused(t *testing.T) {
	e := newEnv(t, nil)
	secret := e.add("alice")
	code := e.oathtool(secret, 0)
	e.mustLogin("alice", testPassword, code, srcA)
	e.clock.Add(time.Second) // same step
	r := e.mustRefuse("alice", testPassword, code, srcB, ReasonReplayedCode)
	if r.Failures != 1 {
		t.Errorf("replay counted %d failures, want 1", r.Failures)
	}
	// The previous step's code is inside the skew but older than the one
	// accepted: also a replay, even after a restart.
	e.restart()
	e.clock.Add(5 * time.Second)
	e.mustRefuse("alice", testPassword, e.oathtool(secret, -30*time.Second), srcA, ReasonReplayedCode)
	// The next step's code is fine.
	e.clock.Add(30 * time.Second)
	e.mustLogin("alice", testPassword, e.oathtool(secret, 0), srcA)
}

func TestConcurrentLoginsOneCodeOneWinner(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxFailures = 100 })
	secret := e.add("alice")
	code := e.oathtool(secret, 0)
	const n = 8
	var wg sync.WaitGroup
	results := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := e.s.Authenticate("alice", []byte(testPassword), code, srcA)
			results <- err
		}()
	}
	wg.Wait()
	close(results)
	ok, replay := 0, 0
	for err := range results {
		switch ReasonOf(err) {
		case ReasonNone:
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			ok++
		case ReasonReplayedCode, ReasonThrottled:
			replay++
		default:
			t.Errorf("unexpected refusal: %v", err)
		}
	}
	if ok != 1 || replay != n-1 {
		t.Errorf("%d logins succeeded and %d were refused as replays; want exactly 1 and %d", ok, replay, n-1)
	}
}

func TestLockoutAfterMaxFailuresAndAdminUnlock(t *testing.T) {
	e := newEnv(t, nil)
	secret := e.add("alice")
	for i := 1; i <= DefaultMaxFailures; i++ {
		e.clock.Add(time.Hour) // past the back-off
		r := e.mustRefuse("alice", "not the password", e.oathtool(secret, 0), srcA, ReasonBadPassword)
		if r.Failures != i || r.Locked != (i == DefaultMaxFailures) {
			t.Fatalf("failure %d: %+v", i, r)
		}
	}
	if ev := e.ev.last(); ev.Kind != EventLocked || ev.Failures != DefaultMaxFailures {
		t.Errorf("last event %+v, want locked", ev)
	}
	// Locked: even the right password and code are refused, and the
	// client is told why only because it knew the password.
	e.clock.Add(24 * time.Hour)
	r := e.mustRefuse("alice", testPassword, e.oathtool(secret, 0), srcA, ReasonLocked)
	if r.ClientMessage() == (&Refusal{Reason: ReasonBadPassword}).ClientMessage() {
		t.Error("locked account gives the generic message to the password holder")
	}
	// A wrong password while locked counts and is backed off like any
	// other: the lock's different answer to the right password must not
	// make the account a free password oracle.
	bad := e.mustRefuse("alice", "still wrong pw", e.oathtool(secret, 0), srcA, ReasonBadPassword)
	if bad.Failures != DefaultMaxFailures+1 || !bad.Locked {
		t.Errorf("failure while locked: %+v, want counted (%d) and still locked", bad, DefaultMaxFailures+1)
	}
	wait := DefaultUserBackoff.delay(DefaultMaxFailures + 1)
	e.clock.Add(wait - time.Second)
	if r := e.mustRefuse("alice", testPassword, e.oathtool(secret, 0), srcA, ReasonThrottled); r.RetryAfter != time.Second {
		t.Errorf("right password %v after a failure while locked: %+v, want throttled for 1s more", wait-time.Second, r)
	}
	e.clock.Add(time.Second)
	e.mustRefuse("alice", testPassword, e.oathtool(secret, 0), srcA, ReasonLocked)
	// The lock survives a restart.
	e.restart()
	if u, _ := e.s.User("alice"); !u.Locked || !u.LockedUntil.IsZero() {
		t.Fatalf("after restart: %+v, want locked until an admin unlocks", u)
	}
	if err := e.s.Unlock("alice"); err != nil {
		t.Fatal(err)
	}
	e.mustLogin("alice", testPassword, e.oathtool(secret, 0), srcA)
	if u, _ := e.s.User("alice"); u.Locked || u.Failures != 0 {
		t.Errorf("after unlock and login: %+v", u)
	}
}

func TestAutoUnlock(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxFailures = 2; c.AutoUnlock = 15 * time.Minute })
	secret := e.add("alice")
	for range 2 {
		e.clock.Add(time.Minute)
		e.mustRefuse("alice", "not the password", e.oathtool(secret, 0), srcA, ReasonBadPassword)
	}
	e.clock.Add(10 * time.Minute)
	e.mustRefuse("alice", testPassword, e.oathtool(secret, 0), srcA, ReasonLocked)
	e.clock.Add(6 * time.Minute)
	e.mustLogin("alice", testPassword, e.oathtool(secret, 0), srcA)
}

func TestUserBackoff(t *testing.T) {
	e := newEnv(t, nil)
	secret := e.add("alice")
	e.mustRefuse("alice", "not the password", e.oathtool(secret, 0), srcA, ReasonBadPassword)
	r := e.mustRefuse("alice", testPassword, e.oathtool(secret, 0), srcA, ReasonThrottled)
	if r.RetryAfter != time.Second || r.Failures != 1 {
		t.Errorf("throttled: %+v, want retry after 1s and the failure not counted", r)
	}
	e.clock.Add(time.Second)
	e.mustRefuse("alice", "not the password", e.oathtool(secret, 0), srcA, ReasonBadPassword)
	e.clock.Add(time.Second)
	if r := e.mustRefuse("alice", testPassword, e.oathtool(secret, 0), srcA, ReasonThrottled); r.RetryAfter != time.Second {
		t.Errorf("second back-off: retry after %v, want 1s more (2s in all)", r.RetryAfter)
	}
	e.clock.Add(time.Second)
	e.mustLogin("alice", testPassword, e.oathtool(secret, 0), srcA)
}

func TestSourceRateLimit(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.SourceLimit = SourceLimit{Burst: 3, Every: time.Minute} })
	secret := e.add("alice")
	for _, u := range []string{"bob", "carol", "dave"} {
		e.mustRefuse(u, testPassword, "123456", srcA, ReasonUnknownUser)
	}
	// The source is out of tokens: even alice's right credentials are
	// refused from there, without counting against alice.
	r := e.mustRefuse("alice", testPassword, e.oathtool(secret, 0), srcA, ReasonSourceLimited)
	if r.RetryAfter <= 0 || r.RetryAfter > time.Minute {
		t.Errorf("retry after %v", r.RetryAfter)
	}
	if u, _ := e.s.User("alice"); u.Failures != 0 {
		t.Errorf("source limit counted %d failures against alice", u.Failures)
	}
	// Another source is not affected.
	e.mustLogin("alice", testPassword, e.oathtool(secret, 0), srcB)
	// One token back after a minute.
	e.clock.Add(time.Minute)
	e.mustRefuse("erin", testPassword, "123456", srcA, ReasonUnknownUser)
	e.mustRefuse("erin", testPassword, "123456", srcA, ReasonSourceLimited)
}

// Concurrent attempts from one source are limited as sequential ones
// are: each takes its token before its password hash runs, so a burst of
// attempts sent at once is not all checked before the first failure
// lands. The clock stands still: no token refills.
func TestSourceRateLimitConcurrent(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.SourceLimit = SourceLimit{Burst: 2, Every: time.Hour} })
	const n = 40
	reasons := concurrently(n, func(i int) error {
		_, err := e.s.Authenticate(fmt.Sprintf("nobody-%d", i), []byte("wrong"), "123456", srcA)
		return err
	})
	if reasons[ReasonUnknownUser] != 2 || reasons[ReasonSourceLimited] != n-2 {
		t.Errorf("%d concurrent wrong logins from one source with a burst of 2: %v; want 2 checked and %d refused as source-limited", n, reasons, n-2)
	}
}

// Concurrent attempts at one user are backed off as sequential ones are:
// one is checked, the rest are refused as throttled without a password
// check (and without counting), whether they overlap the first or come
// after its failure.
func TestUserBackoffConcurrent(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxFailures = 100; c.SourceLimit = SourceLimit{Burst: 100, Every: time.Second} })
	e.add("alice")
	const n = 20
	reasons := concurrently(n, func(int) error {
		_, err := e.s.Authenticate("alice", []byte("not the password"), "123456", srcA)
		return err
	})
	if reasons[ReasonBadPassword] != 1 || reasons[ReasonThrottled] != n-1 {
		t.Errorf("%d concurrent wrong passwords for alice: %v; want 1 checked and %d throttled", n, reasons, n-1)
	}
	if u, _ := e.s.User("alice"); u.Failures != 1 {
		t.Errorf("alice has %d failures recorded, want 1", u.Failures)
	}
	// An unknown name behaves the same.
	reasons = concurrently(n, func(int) error {
		_, err := e.s.Authenticate("mallory", []byte("not the password"), "123456", srcA)
		return err
	})
	if reasons[ReasonUnknownUser] != 1 || reasons[ReasonThrottled] != n-1 {
		t.Errorf("%d concurrent attempts at an unknown name: %v; want 1 checked and %d throttled", n, reasons, n-1)
	}
}

// concurrently runs f(0..n-1) at once and counts the refusal reasons.
func concurrently(n int, f func(i int) error) map[Reason]int {
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = f(i)
		}()
	}
	close(start)
	wg.Wait()
	reasons := map[Reason]int{}
	for _, err := range errs {
		reasons[ReasonOf(err)]++
	}
	return reasons
}

func TestDisabledUser(t *testing.T) {
	e := newEnv(t, nil)
	secret := e.add("alice")
	l := e.mustLogin("alice", testPassword, e.oathtool(secret, 0), srcA)
	if err := e.s.CheckCredential("alice", l.Generation, nil); err != nil {
		t.Fatal(err)
	}
	if err := e.s.Disable("alice"); err != nil {
		t.Fatal(err)
	}
	e.clock.Add(30 * time.Second)
	e.mustRefuse("alice", testPassword, e.oathtool(secret, 0), srcA, ReasonDisabled)
	if err := e.s.CheckCredential("alice", l.Generation, nil); !errors.Is(err, ErrCredentialRevoked) {
		t.Errorf("certificate of a disabled user: %v", err)
	}
	if err := e.s.Enable("alice"); err != nil {
		t.Fatal(err)
	}
	l2 := e.mustLogin("alice", testPassword, e.oathtool(secret, 0), srcA)
	if l2.Generation <= l.Generation {
		t.Errorf("generation %d after disable, was %d", l2.Generation, l.Generation)
	}
	if err := e.s.CheckCredential("alice", l.Generation, nil); !errors.Is(err, ErrCredentialRevoked) {
		t.Errorf("certificate from before the disable works again after enable: %v", err)
	}
}

func TestRaisedArgon2ParamsRehashOnLogin(t *testing.T) {
	e := newEnv(t, nil)
	secret := e.add("alice")
	e.s.Close()
	raised := testArgon2
	raised.Time = 2
	e.cfg.Argon2 = raised
	e.open()
	e.mustLogin("alice", testPassword, e.oathtool(secret, 0), srcA)
	if got := e.s.data.Users["alice"].Password.Params; got != raised {
		t.Errorf("after login the hash has %+v, want %+v", got, raised)
	}
	e.restart()
	e.clock.Add(30 * time.Second)
	e.mustLogin("alice", testPassword, e.oathtool(secret, 0), srcA)
	e.clock.Add(30 * time.Second)
	e.mustRefuse("alice", "not the password", e.oathtool(secret, 0), srcA, ReasonBadPassword)
}
