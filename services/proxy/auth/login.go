package auth

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/otgate/otgate/services/proxy/auth/totp"
)

// Login is a successful authentication.
type Login struct {
	User  string
	Roles []string // recorded at enrolment; the site file's win when it lists the user
	// Generation goes into the certificate the CA issues for this login.
	Generation uint64
	// Step is the accepted TOTP step (no code of this step or before is
	// accepted again).
	Step uint64
	// Confirmed: this login confirmed a pending enrolment.
	Confirmed bool
}

// Refusal is a refused login. Reason is exact (for the audit log and the
// gate's own log); ClientMessage is what the client may be told.
type Refusal struct {
	User   string
	Source netip.Addr
	Reason Reason
	// RetryAfter is set for throttled and source-rate-limited refusals.
	RetryAfter time.Duration
	// Failures is the user's consecutive failure count after this attempt.
	Failures int
	// Locked: the account is locked (now, or by this attempt).
	Locked bool
	// UnknownUser: there is no such user (Reason says so too, except for
	// a throttled attempt on an unknown name).
	UnknownUser bool
}

func (r *Refusal) Error() string {
	msg := fmt.Sprintf("auth: login of %q from %v refused: %s", r.User, r.Source, r.Reason)
	if r.RetryAfter > 0 {
		msg += fmt.Sprintf(" (retry after %v)", r.RetryAfter.Round(time.Second))
	}
	if r.Failures > 0 {
		msg += fmt.Sprintf(" (%d consecutive failures)", r.Failures)
	}
	if r.Locked {
		msg += " (account locked)"
	}
	if r.UnknownUser && r.Reason != ReasonUnknownUser {
		msg += " (unknown user)"
	}
	return msg
}

// ClientMessage is what the login client may be told: an unknown user, a
// wrong password and a wrong or replayed code look the same, and a lock or
// disable is only revealed to someone who knew the password.
func (r *Refusal) ClientMessage() string {
	switch r.Reason {
	case ReasonLocked:
		return "account locked after too many failed logins: ask an administrator to unlock it"
	case ReasonDisabled:
		return "account disabled: ask an administrator"
	case ReasonThrottled, ReasonSourceLimited:
		return fmt.Sprintf("too many failed logins: try again in %v", r.RetryAfter.Round(time.Second)+time.Second)
	case ReasonMalformed:
		return "user name, password and code are required"
	}
	return msgLoginFailed
}

// msgLoginFailed is the one answer to an unknown user, a wrong password
// and a wrong or replayed code.
const msgLoginFailed = "login failed: wrong user name, password or code (each code works only once)"

func (s *Store) refuse(r *Refusal, now time.Time) error {
	e := AuthEvent{Time: now, Kind: EventLoginFailed, User: r.User, Source: r.Source, Reason: r.Reason, Failures: r.Failures}
	if r.UnknownUser && r.Reason != ReasonUnknownUser {
		e.Detail = "unknown user"
	}
	s.emit(e)
	return r
}

// Authenticate checks a login: password and TOTP code of user, from the
// client address source. It returns a *Refusal (errors.As) when the login
// is refused, possibly joined with an error that kept the refusal from
// being recorded. Failures count towards the lockout, and the per-source
// limit; a success resets the count, remembers the code's step (so the
// code cannot be used again) and confirms a pending enrolment.
//
// Every refusal that answers with the one "wrong user name, password or
// code" message takes at least a user-specific minimum time (padFailure),
// so that its duration does not tell an unknown user from a known one
// (whose failure is written to the store with an fsync) either.
func (s *Store) Authenticate(user string, password []byte, code string, source netip.Addr) (*Login, error) {
	start := time.Now()
	l, err := s.authenticate(user, password, code, source)
	if r := (*Refusal)(nil); errors.As(err, &r) && r.ClientMessage() == msgLoginFailed {
		s.padFailure(user, start)
	}
	return l, err
}

// padFailure sleeps until a refused login that began at start has taken a
// multiple of the user's minimum failure time: OpenSSH's answer to the
// same problem (auth2.c, ensure_minimum_time_since): the base is 5-9 ms
// from a keyed hash of the name, the same for a name whether it exists or
// not and unpredictable without the store's in-memory key, doubled until
// it covers what the attempt took, so the argon2id run and an fsync both
// fall inside one step.
func (s *Store) padFailure(user string, start time.Time) {
	d := failureDelay(s.delayKey, user)
	elapsed := time.Since(start)
	for d < elapsed {
		d *= 2
	}
	s.waitUntil(start, elapsed, d)
}

// sleepUntil sleeps until d has passed since start.
func sleepUntil(start time.Time, _, d time.Duration) { time.Sleep(d - time.Since(start)) }

// failureDelay is user's base minimum failure time: 5 ms plus up to 4 ms
// from an HMAC-SHA256 of the name under key.
func failureDelay(key []byte, user string) time.Duration {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(user))
	sum := m.Sum(nil)
	return 5*time.Millisecond + time.Duration(binary.BigEndian.Uint32(sum)%4000)*time.Microsecond
}

func (s *Store) authenticate(user string, password []byte, code string, source netip.Addr) (*Login, error) {
	now := s.cfg.Now()
	if ok, wait := s.sources.take(source, now); !ok {
		return nil, s.refuse(&Refusal{User: user, Source: source, Reason: ReasonSourceLimited, RetryAfter: wait}, now)
	}
	l, err := s.check(user, password, code, source, now)
	if r := (*Refusal)(nil); !errors.As(err, &r) || !r.Reason.failure() {
		s.sources.refund(source, now)
	}
	return l, err
}

// failure reports whether a refusal for this reason is a failed guess,
// one that counts against the source's limit.
func (r Reason) failure() bool {
	switch r {
	case ReasonUnknownUser, ReasonBadPassword, ReasonBadCode, ReasonReplayedCode:
		return true
	}
	return false
}

// attemptRetry is the wait a client is told when another attempt at the
// same name is being checked.
const attemptRetry = time.Second

// check checks one login attempt whose source token is taken. At most one
// attempt per name is checked at a time (known or not, so the refusal
// does not tell them apart): the per-user back-off reads the failure the
// attempt before recorded, which a concurrent attempt, checked while the
// first one's password hash ran, would not see.
func (s *Store) check(user string, password []byte, code string, source netip.Addr, now time.Time) (*Login, error) {
	if user == "" || len(password) == 0 || code == "" {
		return nil, s.refuse(&Refusal{User: user, Source: source, Reason: ReasonMalformed}, now)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, errClosed
	}
	var u *userRecord
	if cur := s.data.Users[user]; cur != nil {
		u = cur.clone()
	}
	if _, busy := s.checking[user]; busy {
		s.mu.Unlock()
		r := &Refusal{User: user, Source: source, Reason: ReasonThrottled, RetryAfter: attemptRetry, UnknownUser: u == nil}
		if u != nil {
			r.Failures = u.Failures
		}
		return nil, s.refuse(r, now)
	}
	s.checking[user] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.checking, user)
		s.mu.Unlock()
	}()

	if u == nil {
		// Behave as for a user with a wrong password: same back-off, same
		// argon2id cost, same client message.
		if wait, n := s.unknown.wait(user, s.cfg.UserBackoff, now); wait > 0 {
			return nil, s.refuse(&Refusal{User: user, Source: source, Reason: ReasonThrottled, RetryAfter: wait, Failures: n, UnknownUser: true}, now)
		}
		s.hash(func() { s.dummy.verify(password) })
		n := s.unknown.fail(user, s.cfg.UserBackoff, now)
		return nil, s.refuse(&Refusal{User: user, Source: source, Reason: ReasonUnknownUser, Failures: n, UnknownUser: true}, now)
	}
	if lockExpired(u, now) {
		u.Locked, u.Failures = false, 0
	}
	// The back-off holds while the account is locked too: a locked
	// account still answers a right password differently (it says it is
	// locked), so guesses at it must stay as slow as before the lock.
	if u.Failures > 0 {
		if until := u.LastFailed.Add(s.cfg.UserBackoff.delay(u.Failures)); now.Before(until) {
			return nil, s.refuse(&Refusal{User: user, Source: source, Reason: ReasonThrottled, RetryAfter: until.Sub(now), Failures: u.Failures, Locked: u.Locked}, now)
		}
	}
	var pwOK bool
	s.hash(func() { pwOK = u.Password.verify(password) })
	if !pwOK {
		return nil, s.fail(u, ReasonBadPassword, source, now)
	}
	if u.Locked {
		return nil, s.refuse(&Refusal{User: user, Source: source, Reason: ReasonLocked, Failures: u.Failures, Locked: true}, now)
	}
	if u.Disabled {
		return nil, s.refuse(&Refusal{User: user, Source: source, Reason: ReasonDisabled}, now)
	}
	step, codeOK, err := totp.Verify(u.TOTPSecret, code, now, u.TOTP)
	if err != nil || !codeOK {
		return nil, s.fail(u, ReasonBadCode, source, now)
	}
	// Raised cost parameters apply from the next successful login on.
	var rehash *passwordHash
	if u.Password.Params != s.cfg.Argon2 {
		s.hash(func() {
			if h, err := hashPassword(password, s.cfg.Argon2); err == nil {
				rehash = &h
			}
		})
	}
	return s.succeed(u, step, rehash, source, now)
}

// hash runs f (an argon2id computation) within the concurrency bound.
func (s *Store) hash(f func()) {
	s.hashes <- struct{}{}
	defer func() { <-s.hashes }()
	f()
}

// fail records a failed attempt of an existing user and refuses it.
func (s *Store) fail(snap *userRecord, reason Reason, source netip.Addr, now time.Time) error {
	r := &Refusal{User: snap.Name, Source: source, Reason: reason}
	var newlyLocked bool
	var gen uint64
	s.mu.Lock()
	cur := s.data.Users[snap.Name]
	var werr error
	if cur != nil {
		u := cur.clone()
		if lockExpired(u, now) {
			u.Locked, u.LockedAt, u.LockedUntil, u.Failures = false, time.Time{}, time.Time{}, 0
		}
		// A failure while locked counts too: the back-off keeps growing
		// (at most UserBackoff.Max) and an unlock resets it.
		u.Failures++
		u.LastFailed = now
		if !u.Locked && u.Failures >= s.cfg.MaxFailures {
			u.Locked, u.LockedAt, newlyLocked = true, now, true
			if s.cfg.AutoUnlock > 0 {
				u.LockedUntil = now.Add(s.cfg.AutoUnlock)
			}
		}
		werr = s.commitLocked(u.Name, u, now)
		r.Failures, r.Locked, gen = u.Failures, u.Locked, u.Generation
		if werr != nil {
			// Not recorded: report what is on disk.
			r.Failures, r.Locked = cur.Failures, cur.Locked
		}
	}
	s.mu.Unlock()
	err := s.refuse(r, now)
	if newlyLocked && werr == nil {
		until := "until an admin unlocks it"
		if s.cfg.AutoUnlock > 0 {
			until = "until " + now.Add(s.cfg.AutoUnlock).UTC().Format(time.RFC3339)
		}
		s.emit(AuthEvent{Time: now, Kind: EventLocked, User: snap.Name, Source: source, Reason: reason,
			Failures: r.Failures, Generation: gen, Detail: fmt.Sprintf("%d consecutive failures: locked %s", r.Failures, until)})
	}
	if werr != nil {
		return errors.Join(err, fmt.Errorf("auth: failure of %q not recorded: %w", snap.Name, werr))
	}
	return err
}

// succeed commits a login whose password and code matched the snapshot,
// re-checking the current record: the code's step must still be new (two
// concurrent logins with one code: only one wins) and nothing that
// refuses a login may have happened meanwhile. rehash, when set, replaces
// a password hash made with older cost parameters.
func (s *Store) succeed(snap *userRecord, step uint64, rehash *passwordHash, source netip.Addr, now time.Time) (*Login, error) {
	s.mu.Lock()
	cur := s.data.Users[snap.Name]
	var reason Reason
	switch {
	case cur == nil:
		reason = ReasonUnknownUser
	case !bytes.Equal(cur.Password.Hash, snap.Password.Hash) || !bytes.Equal(cur.TOTPSecret, snap.TOTPSecret):
		reason = ReasonBadPassword // changed while we checked
	case cur.Disabled:
		reason = ReasonDisabled
	case cur.Locked && !lockExpired(cur, now):
		reason = ReasonLocked
	case step <= cur.LastStep:
		reason = ReasonReplayedCode
	}
	if reason != ReasonNone {
		s.mu.Unlock()
		if reason == ReasonReplayedCode {
			return nil, s.fail(snap, reason, source, now)
		}
		r := &Refusal{User: snap.Name, Source: source, Reason: reason}
		if cur != nil {
			r.Failures, r.Locked = cur.Failures, cur.Locked && !lockExpired(cur, now)
		}
		return nil, s.refuse(r, now)
	}
	u := cur.clone()
	confirmed := u.Pending
	u.Pending = false
	u.LastStep = step
	u.Failures, u.Locked, u.LockedAt, u.LockedUntil = 0, false, time.Time{}, time.Time{}
	u.LastLogin = now
	if rehash != nil {
		u.Password = *rehash
	}
	err := s.commitLocked(u.Name, u, now)
	s.mu.Unlock()
	if err != nil {
		// Fail closed: a login whose step was not recorded could be replayed.
		return nil, fmt.Errorf("auth: login of %q not recorded, refused: %w", u.Name, err)
	}
	if confirmed {
		s.emit(AuthEvent{Time: now, Kind: EventEnrolled, User: u.Name, Source: source, Generation: u.Generation})
	}
	s.emit(AuthEvent{Time: now, Kind: EventLogin, User: u.Name, Source: source, Generation: u.Generation,
		Detail: fmt.Sprintf("TOTP step %d", step)})
	return &Login{User: u.Name, Roles: slices.Clone(u.Roles), Generation: u.Generation, Step: step, Confirmed: confirmed}, nil
}
