// Package totp implements time-based one-time passwords (RFC 6238, on the
// HOTP algorithm of RFC 4226) as used by authenticator apps: a shared
// secret, base32-encoded (RFC 4648) for people and in otpauth:// URIs (the
// Google Authenticator Key Uri Format), and verification that returns the
// matched time step so the caller can refuse a code that was already used.
//
// The package holds no state: remembering the last accepted step of each
// user (replay protection) is the caller's job.
package totp

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"strings"
	"time"
)

// Algorithm is the HMAC hash of the HOTP computation.
type Algorithm string

// Algorithms of the Key Uri Format. SHA1 is what every authenticator app
// supports; the others are in RFC 6238 but not universally implemented.
const (
	SHA1   Algorithm = "SHA1"
	SHA256 Algorithm = "SHA256"
	SHA512 Algorithm = "SHA512"
)

func (a Algorithm) hash() (func() hash.Hash, error) {
	switch a {
	case SHA1:
		return sha1.New, nil
	case SHA256:
		return sha256.New, nil
	case SHA512:
		return sha512.New, nil
	}
	return nil, fmt.Errorf("totp: unknown algorithm %q (want SHA1, SHA256 or SHA512)", string(a))
}

// Params are the code parameters shared by the gate and the authenticator.
type Params struct {
	Algorithm Algorithm `cbor:"1,keyasint"`
	Digits    int       `cbor:"2,keyasint"` // 6 to 8
	Period    int       `cbor:"3,keyasint"` // seconds, 15 to 300
	// Skew is how many steps before and after the current one are
	// accepted, for clock drift and typing time. Not part of the URI.
	Skew int `cbor:"4,keyasint"`
}

// DefaultParams are the parameters every authenticator app understands:
// HMAC-SHA1, 6 digits, 30 s, one step of skew either way.
var DefaultParams = Params{Algorithm: SHA1, Digits: 6, Period: 30, Skew: 1}

// MinSecretLen is the shortest secret accepted (RFC 4226 section 4
// requires 128 bits and recommends 160).
const MinSecretLen = 16

// DefaultSecretLen is the length of generated secrets: 160 bits, the size
// of an HMAC-SHA1 output as RFC 4226 recommends.
const DefaultSecretLen = 20

// ErrBadCode: the code is not a string of the configured number of
// digits. A well-formed code that does not match is not an error: Verify
// returns ok=false.
var ErrBadCode = errors.New("totp: malformed code")

// Validate checks the parameters.
func (p Params) Validate() error {
	if _, err := p.Algorithm.hash(); err != nil {
		return err
	}
	if p.Digits < 6 || p.Digits > 8 {
		return fmt.Errorf("totp: %d digits: want 6 to 8", p.Digits)
	}
	if p.Period < 15 || p.Period > 300 {
		return fmt.Errorf("totp: period %ds: want 15 to 300 s", p.Period)
	}
	if p.Skew < 0 || p.Skew > 10 {
		return fmt.Errorf("totp: skew of %d steps: want 0 to 10", p.Skew)
	}
	return nil
}

// GenerateSecret returns n random bytes (DefaultSecretLen when n is 0).
func GenerateSecret(n int) ([]byte, error) {
	if n == 0 {
		n = DefaultSecretLen
	}
	if n < MinSecretLen {
		return nil, fmt.Errorf("totp: secret of %d bytes is shorter than the minimum %d", n, MinSecretLen)
	}
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("totp: random secret: %w", err)
	}
	return b, nil
}

// Step is the time step t falls in: floor(unix seconds / period) (RFC 6238
// T with T0 = 0). Times before 1970 are step 0.
func (p Params) Step(t time.Time) uint64 {
	s := t.Unix()
	if s < 0 || p.Period <= 0 {
		return 0
	}
	return uint64(s) / uint64(p.Period)
}

// StepEnd is when step ends (the first instant of the next step).
func (p Params) StepEnd(step uint64) time.Time {
	return time.Unix(int64(step+1)*int64(p.Period), 0)
}

// CodeAt is the code for one time step (RFC 4226 HOTP with the step as
// the counter).
func CodeAt(secret []byte, step uint64, p Params) (string, error) {
	if err := p.Validate(); err != nil {
		return "", err
	}
	return hotp(secret, step, p), nil
}

// Code is the code for time t.
func Code(secret []byte, t time.Time, p Params) (string, error) {
	return CodeAt(secret, p.Step(t), p)
}

func hotp(secret []byte, counter uint64, p Params) string {
	h, _ := p.Algorithm.hash()
	mac := hmac.New(h, secret)
	var msg [8]byte
	binary.BigEndian.PutUint64(msg[:], counter)
	mac.Write(msg[:])
	sum := mac.Sum(nil)
	// Dynamic truncation (RFC 4226 section 5.3).
	off := sum[len(sum)-1] & 0x0f
	bin := binary.BigEndian.Uint32(sum[off:off+4]) & 0x7fffffff
	mod := uint32(1)
	for range p.Digits {
		mod *= 10
	}
	return fmt.Sprintf("%0*d", p.Digits, bin%mod)
}

// NormalizeCode removes the spaces and dashes people type inside a code
// ("123 456") and checks that what remains is p.Digits decimal digits.
func NormalizeCode(code string, p Params) (string, error) {
	c := strings.Map(func(r rune) rune {
		if r == ' ' || r == '-' {
			return -1
		}
		return r
	}, code)
	if len(c) != p.Digits {
		return "", fmt.Errorf("%w: %d digits, want %d", ErrBadCode, len(c), p.Digits)
	}
	for _, r := range c {
		if r < '0' || r > '9' {
			return "", fmt.Errorf("%w: %q is not a digit", ErrBadCode, r)
		}
	}
	return c, nil
}

// Verify checks code against the steps around now (p.Skew either way).
// It returns the matched step, closest to now first, and ok=true on a
// match. The caller refuses the code if the step is not later than the
// last step it accepted for this secret (a replay). Every candidate step is
// compared in constant time.
func Verify(secret []byte, code string, now time.Time, p Params) (step uint64, ok bool, err error) {
	if err := p.Validate(); err != nil {
		return 0, false, err
	}
	c, err := NormalizeCode(code, p)
	if err != nil {
		return 0, false, err
	}
	cur := p.Step(now)
	// Candidates in order of preference: now, then alternately earlier and
	// later steps.
	cands := []uint64{cur}
	for d := uint64(1); d <= uint64(p.Skew); d++ {
		if cur >= d {
			cands = append(cands, cur-d)
		}
		cands = append(cands, cur+d)
	}
	for _, s := range cands {
		if subtle.ConstantTimeCompare([]byte(hotp(secret, s, p)), []byte(c)) == 1 && !ok {
			step, ok = s, true
		}
	}
	return step, ok, nil
}
