package auth

import (
	"crypto/rand"
	"crypto/subtle"
	"fmt"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"
)

// Argon2Params are the argon2id cost parameters. They are stored with
// each hash, so raising the defaults later only affects new passwords (and
// rehashes on the next successful login).
type Argon2Params struct {
	Time      uint32 `cbor:"1,keyasint"` // passes
	MemoryKiB uint32 `cbor:"2,keyasint"`
	Threads   uint8  `cbor:"3,keyasint"`
	KeyLen    uint32 `cbor:"4,keyasint"`
}

// DefaultArgon2 is RFC 9106's second recommended option (t=3, 64 MiB)
// with 2 lanes for the appliance's small CPUs. BenchmarkArgon2Verify
// prints what one verification costs.
var DefaultArgon2 = Argon2Params{Time: 3, MemoryKiB: 64 * 1024, Threads: 2, KeyLen: 32}

const saltLen = 16

// Password limits: at least 12 characters (NIST SP 800-63B allows 8; a
// gate to a plant deserves more), at most 1024 bytes.
const (
	MinPasswordLen = 12
	MaxPasswordLen = 1024
)

func (p Argon2Params) validate() error {
	if p.Time < 1 || p.Time > 100 || p.MemoryKiB < 8*1024 || p.MemoryKiB > 4*1024*1024 || p.Threads < 1 || p.KeyLen < 16 || p.KeyLen > 64 {
		return fmt.Errorf("auth: argon2id parameters %+v out of range (time 1-100, memory 8 MiB-4 GiB, threads >= 1, key 16-64 bytes)", p)
	}
	return nil
}

// passwordHash is a stored argon2id hash with its parameters.
type passwordHash struct {
	Params Argon2Params `cbor:"1,keyasint"`
	Salt   []byte       `cbor:"2,keyasint"`
	Hash   []byte       `cbor:"3,keyasint"`
}

// checkPassword enforces the length policy.
func checkPassword(pw []byte) error {
	if !utf8.Valid(pw) {
		return fmt.Errorf("%w: not valid UTF-8", ErrBadPassword)
	}
	if n := utf8.RuneCount(pw); n < MinPasswordLen {
		return fmt.Errorf("%w: %d characters, want at least %d", ErrBadPassword, n, MinPasswordLen)
	}
	if len(pw) > MaxPasswordLen {
		return fmt.Errorf("%w: %d bytes, want at most %d", ErrBadPassword, len(pw), MaxPasswordLen)
	}
	return nil
}

func hashPassword(pw []byte, p Argon2Params) (passwordHash, error) {
	if err := p.validate(); err != nil {
		return passwordHash{}, err
	}
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return passwordHash{}, fmt.Errorf("auth: salt: %w", err)
	}
	return passwordHash{Params: p, Salt: salt, Hash: argon2.IDKey(pw, salt, p.Time, p.MemoryKiB, p.Threads, p.KeyLen)}, nil
}

// dummyHash is a hash no password matches: a random salt and random
// "hash" bytes under the store's parameters. Verifying against it costs
// one Argon2id run, as for a real user, so an unknown user's login takes
// the same time; building it costs nothing (hashing a dummy password at
// start-up took seconds of the proxy's boot on a slow CPU).
func dummyHash(p Argon2Params) (passwordHash, error) {
	if err := p.validate(); err != nil {
		return passwordHash{}, err
	}
	h := passwordHash{Params: p, Salt: make([]byte, saltLen), Hash: make([]byte, p.KeyLen)}
	if _, err := rand.Read(h.Salt); err != nil {
		return passwordHash{}, fmt.Errorf("auth: salt: %w", err)
	}
	if _, err := rand.Read(h.Hash); err != nil {
		return passwordHash{}, fmt.Errorf("auth: dummy hash: %w", err)
	}
	return h, nil
}

// verify recomputes the hash and compares in constant time.
func (h passwordHash) verify(pw []byte) bool {
	if len(pw) > MaxPasswordLen || h.Params.validate() != nil {
		return false
	}
	got := argon2.IDKey(pw, h.Salt, h.Params.Time, h.Params.MemoryKiB, h.Params.Threads, h.Params.KeyLen)
	return subtle.ConstantTimeCompare(got, h.Hash) == 1
}
