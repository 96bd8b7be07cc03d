package auth

import (
	"fmt"
	"slices"
	"time"

	"github.com/otgate/otgate/internal/namepattern"
	"github.com/otgate/otgate/services/proxy/auth/totp"
)

// storeData is the decrypted store.
type storeData struct {
	Version int                    `cbor:"1,keyasint"`
	Users   map[string]*userRecord `cbor:"2,keyasint"`
	// Revoked are certificate serials revoked one by one (logout of one
	// session), kept until the certificate expires.
	Revoked []revokedSerial `cbor:"3,keyasint"`
	// LastGeneration is the highest credential generation ever given to
	// any user. Generations come from this one counter, so a user removed
	// and added again under the same name never matches an old
	// certificate.
	LastGeneration uint64 `cbor:"4,keyasint"`
}

// userRecord is one user. Roles come from the site file once it lists the
// user; until then the roles given at enrolment are kept here.
type userRecord struct {
	Name       string       `cbor:"1,keyasint"`
	Roles      []string     `cbor:"2,keyasint"`
	Password   passwordHash `cbor:"3,keyasint"`
	TOTPSecret []byte       `cbor:"4,keyasint"`
	TOTP       totp.Params  `cbor:"5,keyasint"`
	// Pending: enrolled, but no login has yet proved the authenticator.
	Pending bool `cbor:"6,keyasint"`
	// LastStep is the TOTP step of the last accepted code; a code of this
	// step or an earlier one is a replay.
	LastStep uint64 `cbor:"7,keyasint"`
	// Failures counts consecutive failed logins (reset by a success or
	// an unlock).
	Failures    int       `cbor:"8,keyasint"`
	Locked      bool      `cbor:"9,keyasint"`
	LockedAt    time.Time `cbor:"10,keyasint"`
	LockedUntil time.Time `cbor:"11,keyasint"` // zero: until an admin unlocks
	Disabled    bool      `cbor:"12,keyasint"`
	// Generation is embedded in every certificate issued to the user; a
	// certificate of an older generation is refused.
	Generation uint64    `cbor:"13,keyasint"`
	Created    time.Time `cbor:"14,keyasint"`
	Updated    time.Time `cbor:"15,keyasint"`
	LastLogin  time.Time `cbor:"16,keyasint"`
	LastFailed time.Time `cbor:"17,keyasint"`
}

type revokedSerial struct {
	User     string    `cbor:"1,keyasint"`
	Serial   []byte    `cbor:"2,keyasint"` // big-endian
	NotAfter time.Time `cbor:"3,keyasint"`
}

// UserInfo is what the store tells about a user: no secrets.
type UserInfo struct {
	Name        string
	Roles       []string
	Pending     bool // enrolment not yet confirmed by a login
	Failures    int
	Locked      bool
	LockedUntil time.Time // zero: until an admin unlocks
	Disabled    bool
	Generation  uint64
	Created     time.Time
	Updated     time.Time
	LastLogin   time.Time
}

func (u *userRecord) info() UserInfo {
	return UserInfo{Name: u.Name, Roles: slices.Clone(u.Roles), Pending: u.Pending, Failures: u.Failures,
		Locked: u.Locked, LockedUntil: u.LockedUntil, Disabled: u.Disabled, Generation: u.Generation,
		Created: u.Created, Updated: u.Updated, LastLogin: u.LastLogin}
}

func (u *userRecord) clone() *userRecord {
	c := *u
	c.Roles = slices.Clone(u.Roles)
	c.TOTPSecret = slices.Clone(u.TOTPSecret)
	return &c
}

var nameRE = namepattern.New("[a-z]", "[a-z0-9._-]", 64)

// NameRule describes valid user and role names.
const NameRule = "a lower-case letter, then up to 63 lower-case letters, digits, '.', '_' or '-'"

// CheckName validates a user or role name (it becomes a path segment of
// the user's certificate URI spiffe://<site>/user/<name>).
func CheckName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("%w %q: want %s", ErrBadName, name, NameRule)
	}
	return nil
}

// check validates a decoded store.
func (d *storeData) check(path string) error {
	for k, u := range d.Users {
		switch {
		case u == nil:
			return corrupt(path, fmt.Sprintf("user %q: empty record", k), nil)
		case u.Name != k:
			return corrupt(path, fmt.Sprintf("user %q: record names %q", k, u.Name), nil)
		case CheckName(k) != nil:
			return corrupt(path, fmt.Sprintf("user %q", k), CheckName(k))
		case u.TOTP.Validate() != nil:
			return corrupt(path, fmt.Sprintf("user %q", k), u.TOTP.Validate())
		case len(u.TOTPSecret) < totp.MinSecretLen:
			return corrupt(path, fmt.Sprintf("user %q: TOTP secret of %d bytes", k, len(u.TOTPSecret)), nil)
		case u.Password.Params.validate() != nil:
			return corrupt(path, fmt.Sprintf("user %q", k), u.Password.Params.validate())
		case len(u.Password.Hash) != int(u.Password.Params.KeyLen) || len(u.Password.Salt) < 8:
			return corrupt(path, fmt.Sprintf("user %q: password hash of %d bytes and salt of %d", k, len(u.Password.Hash), len(u.Password.Salt)), nil)
		}
	}
	return nil
}
