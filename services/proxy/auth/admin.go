package auth

import (
	"fmt"
	"math/big"
	"slices"
	"time"

	"github.com/otgate/otgate/services/proxy/auth/totp"
)

// Enrolment is what the new user puts into an authenticator app. The
// TOTP secret is shown once, here, and never again.
type Enrolment struct {
	User string
	Key  totp.Key
	// URI is the otpauth:// URI (also to be shown as a QR code).
	URI string
}

func (s *Store) newTOTP(name string) (totp.Key, string, error) {
	secret, err := totp.GenerateSecret(0)
	if err != nil {
		return totp.Key{}, "", err
	}
	k := totp.Key{Issuer: s.cfg.Issuer, Account: name, Secret: secret, Params: s.cfg.TOTP}
	uri, err := k.URI()
	if err != nil {
		return totp.Key{}, "", fmt.Errorf("auth: user %q: %w", name, err)
	}
	return k, uri, nil
}

// AddUser creates a user with a password and a new TOTP secret. The user
// is pending until the first successful login proves the authenticator.
func (s *Store) AddUser(name string, password []byte, roles []string) (*Enrolment, error) {
	return s.AddUserWithSecret(name, password, roles, nil)
}

// AddUserWithSecret is AddUser with a given TOTP secret (an existing
// authenticator entry moved to this gate, or the demo image's
// pre-generated one); nil generates a new secret. The secret must be at
// least totp.MinSecretLen bytes.
func (s *Store) AddUserWithSecret(name string, password []byte, roles []string, secret []byte) (*Enrolment, error) {
	if err := CheckName(name); err != nil {
		return nil, fmt.Errorf("auth: add user: %w", err)
	}
	for _, r := range roles {
		if err := CheckName(r); err != nil {
			return nil, fmt.Errorf("auth: add user %q: role: %w", name, err)
		}
	}
	if err := checkPassword(password); err != nil {
		return nil, fmt.Errorf("auth: add user %q: %w", name, err)
	}
	s.mu.Lock()
	exists := s.data.Users[name] != nil
	s.mu.Unlock()
	if exists {
		return nil, fmt.Errorf("auth: add user %q: %w", name, ErrUserExists)
	}
	h, err := hashPassword(password, s.cfg.Argon2)
	if err != nil {
		return nil, err
	}
	key, uri, err := s.newTOTP(name)
	if err != nil {
		return nil, err
	}
	if secret != nil {
		if len(secret) < totp.MinSecretLen {
			return nil, fmt.Errorf("auth: add user %q: TOTP secret of %d bytes is shorter than the minimum %d", name, len(secret), totp.MinSecretLen)
		}
		key.Secret = slices.Clone(secret)
		if uri, err = key.URI(); err != nil {
			return nil, fmt.Errorf("auth: add user %q: %w", name, err)
		}
	}
	rs := slices.Clone(roles)
	slices.Sort(rs)
	rs = slices.Compact(rs)

	s.mu.Lock()
	if s.data.Users[name] != nil {
		s.mu.Unlock()
		return nil, fmt.Errorf("auth: add user %q: %w", name, ErrUserExists)
	}
	now := s.cfg.Now()
	u := &userRecord{Name: name, Roles: rs, Password: h, TOTPSecret: key.Secret, TOTP: key.Params,
		Pending: true, Generation: s.nextGenerationLocked(), Created: now}
	err = s.commitLocked(name, u, now)
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	s.emit(AuthEvent{Time: now, Kind: EventUserAdded, User: name, Generation: u.Generation, Detail: fmt.Sprintf("roles %v, enrolment pending", rs)})
	return &Enrolment{User: name, Key: key, URI: uri}, nil
}

// RemoveUser deletes a user; its certificates stop verifying.
func (s *Store) RemoveUser(name string) error {
	s.mu.Lock()
	if s.data.Users[name] == nil {
		s.mu.Unlock()
		return fmt.Errorf("auth: remove user %q: %w", name, ErrUnknownUser)
	}
	now := s.cfg.Now()
	err := s.commitLocked(name, nil, now)
	s.mu.Unlock()
	if err != nil {
		return err
	}
	s.emit(AuthEvent{Time: now, Kind: EventUserRemoved, User: name})
	s.revoked(name)
	return nil
}

// Unlock lifts a lockout and clears the failure count. A user with
// neither a lock in force nor failed logins to clear is an error wrapping
// ErrNotLocked, and nothing changes (no write, no event).
func (s *Store) Unlock(name string) error {
	var was bool
	var failures int
	u, err := s.modify(name, func(u *userRecord, _ uint64, now time.Time) error {
		was, failures = u.Locked && !lockExpired(u, now), u.Failures
		if lockExpired(u, now) {
			failures = 0 // the expired lock's count goes at the next attempt
		}
		if !was && failures == 0 {
			return fmt.Errorf("auth: unlock user %q: %w (no failed logins since the last success or unlock); nothing changed", name, ErrNotLocked)
		}
		u.Locked, u.LockedAt, u.LockedUntil, u.Failures = false, time.Time{}, time.Time{}, 0
		return nil
	})
	if err != nil {
		return err
	}
	s.emit(AuthEvent{Kind: EventUnlocked, User: name, Generation: u.Generation, Detail: fmt.Sprintf("by admin (was locked: %v, %d failed logins)", was, failures)})
	return nil
}

// Disable refuses every login of the user and invalidates its
// certificates (generation bump) until Enable.
func (s *Store) Disable(name string) error {
	u, err := s.modify(name, func(u *userRecord, nextGen uint64, _ time.Time) error {
		u.Disabled = true
		u.Generation = nextGen
		return nil
	})
	if err != nil {
		return err
	}
	s.emit(AuthEvent{Kind: EventDisabled, User: name, Generation: u.Generation})
	s.revoked(name)
	return nil
}

// Enable lets a disabled user log in again (certificates issued before
// the Disable stay invalid).
func (s *Store) Enable(name string) error {
	u, err := s.modify(name, func(u *userRecord, nextGen uint64, _ time.Time) error {
		u.Disabled = false
		return nil
	})
	if err != nil {
		return err
	}
	s.emit(AuthEvent{Kind: EventEnabled, User: name, Generation: u.Generation})
	return nil
}

// Revoke invalidates every certificate issued to the user so far (logout
// everywhere, admin revoke) by bumping the credential generation. It
// returns the new generation.
func (s *Store) Revoke(name, why string) (uint64, error) {
	u, err := s.modify(name, func(u *userRecord, nextGen uint64, _ time.Time) error {
		u.Generation = nextGen
		return nil
	})
	if err != nil {
		return 0, err
	}
	s.emit(AuthEvent{Kind: EventRevoked, User: name, Generation: u.Generation, Detail: why})
	s.revoked(name)
	return u.Generation, nil
}

// RevokeCertificate revokes one certificate (logout of one session) until
// notAfter, when it expires anyway.
func (s *Store) RevokeCertificate(name string, serial *big.Int, notAfter time.Time, why string) error {
	if serial == nil || serial.Sign() <= 0 {
		return fmt.Errorf("auth: revoke certificate of %q: bad serial %v", name, serial)
	}
	s.mu.Lock()
	u := s.data.Users[name]
	if u == nil {
		s.mu.Unlock()
		return fmt.Errorf("auth: revoke certificate of %q: %w", name, ErrUnknownUser)
	}
	now := s.cfg.Now()
	if !now.Before(notAfter) {
		s.mu.Unlock()
		return nil // expired already: nothing to remember
	}
	old := s.data.Revoked
	s.data.Revoked = append(slices.Clone(old), revokedSerial{User: name, Serial: serial.Bytes(), NotAfter: notAfter})
	err := s.commitLocked(name, u.clone(), now)
	if err != nil {
		s.data.Revoked = old // the store on disk is unchanged
	}
	gen := u.Generation
	s.mu.Unlock()
	if err != nil {
		return err
	}
	s.emit(AuthEvent{Time: now, Kind: EventSerialRevoked, User: name, Generation: gen, Detail: fmt.Sprintf("serial %x: %s", serial, why)})
	s.revoked(name)
	return nil
}

// SetPassword replaces the user's password.
func (s *Store) SetPassword(name string, password []byte) error {
	if err := checkPassword(password); err != nil {
		return fmt.Errorf("auth: set password of %q: %w", name, err)
	}
	h, err := hashPassword(password, s.cfg.Argon2)
	if err != nil {
		return err
	}
	u, err := s.modify(name, func(u *userRecord, nextGen uint64, _ time.Time) error {
		u.Password = h
		return nil
	})
	if err != nil {
		return err
	}
	s.emit(AuthEvent{Kind: EventPasswordSet, User: name, Generation: u.Generation})
	return nil
}

// ResetTOTP gives the user a new TOTP secret (a lost phone): the user is
// pending again, and certificates issued before are invalidated.
func (s *Store) ResetTOTP(name string) (*Enrolment, error) {
	key, uri, err := s.newTOTP(name)
	if err != nil {
		return nil, err
	}
	u, err := s.modify(name, func(u *userRecord, nextGen uint64, _ time.Time) error {
		u.TOTPSecret, u.TOTP, u.Pending = key.Secret, key.Params, true
		u.Generation = nextGen
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.emit(AuthEvent{Kind: EventTOTPReset, User: name, Generation: u.Generation, Detail: "enrolment pending"})
	s.revoked(name)
	return &Enrolment{User: name, Key: key, URI: uri}, nil
}
