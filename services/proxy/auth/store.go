package auth

import (
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/otgate/otgate/internal/atomicfile"
	"github.com/otgate/otgate/services/proxy/auth/totp"
)

// Files in Config.Dir.
const (
	StoreFile = "users.cbor"
	LockFile  = "users.lock"
)

// Config configures a Store. Zero values take the defaults.
type Config struct {
	// Dir holds the store (/perm/proxy on the appliance).
	Dir string
	// Sealer keeps the store key (the identity service client).
	Sealer SecretSealer
	// Events receives audit events; nil discards them.
	Events Events
	// Now is the clock; nil: time.Now.
	Now func() time.Time
	// Issuer names the gate in authenticator apps ("otgate").
	Issuer string
	// TOTP are the parameters of new enrolments (DefaultParams).
	TOTP totp.Params
	// Argon2 are the cost parameters of new password hashes.
	Argon2 Argon2Params
	// MaxFailures consecutive failed logins lock the account (5).
	MaxFailures int
	// AutoUnlock, when set, lifts a lock after this long; zero keeps the
	// account locked until an admin unlocks it.
	AutoUnlock time.Duration
	// SourceLimit and UserBackoff rate-limit failures.
	SourceLimit SourceLimit
	UserBackoff UserBackoff
	// MaxConcurrentHashes bounds argon2id computations in flight (each
	// takes Argon2.MemoryKiB of memory) (2).
	MaxConcurrentHashes int
	// OnRevoke is called (outside the lock) after a user's credentials
	// were invalidated: generation bumped, user disabled or removed, or
	// one certificate revoked. The proxy ends the user's live sessions
	// that no longer pass CheckCredential.
	OnRevoke func(user string)
}

// DefaultMaxFailures is the lockout threshold.
const DefaultMaxFailures = 5

func (c *Config) defaults() error {
	if c.Dir == "" {
		return errors.New("auth: no store directory configured")
	}
	if c.Sealer == nil {
		return errors.New("auth: no secret sealer configured (the identity service client)")
	}
	if c.Events == nil {
		c.Events = discardEvents{}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Issuer == "" {
		c.Issuer = "otgate"
	}
	if c.TOTP == (totp.Params{}) {
		c.TOTP = totp.DefaultParams
	}
	if err := c.TOTP.Validate(); err != nil {
		return fmt.Errorf("auth: TOTP parameters: %w", err)
	}
	if c.Argon2 == (Argon2Params{}) {
		c.Argon2 = DefaultArgon2
	}
	if err := c.Argon2.validate(); err != nil {
		return err
	}
	if c.MaxFailures == 0 {
		c.MaxFailures = DefaultMaxFailures
	}
	if c.MaxFailures < 1 {
		return fmt.Errorf("auth: MaxFailures %d: want at least 1", c.MaxFailures)
	}
	if c.AutoUnlock < 0 {
		return fmt.Errorf("auth: AutoUnlock %v is negative", c.AutoUnlock)
	}
	if c.SourceLimit == (SourceLimit{}) {
		c.SourceLimit = DefaultSourceLimit
	}
	if c.SourceLimit.Burst < 1 || c.SourceLimit.Every <= 0 {
		return fmt.Errorf("auth: source limit %+v: want a burst of at least 1 and a positive refill period", c.SourceLimit)
	}
	if c.UserBackoff == (UserBackoff{}) {
		c.UserBackoff = DefaultUserBackoff
	}
	if c.MaxConcurrentHashes == 0 {
		c.MaxConcurrentHashes = 2
	}
	return nil
}

// Store is the encrypted user store. It is safe for concurrent use; one
// process at a time may open a store directory.
type Store struct {
	cfg     Config
	path    string
	aead    cipher.AEAD
	lock    *os.File
	sources *sourceLimiter
	unknown unknownNames
	hashes  chan struct{}
	dummy   passwordHash // verified for unknown users, to take the same time

	delayKey []byte // keys the per-user minimum failure time (padFailure)
	// waitUntil is sleepUntil; tests record the padding. elapsed is the
	// time the attempt had taken when padFailure chose d.
	waitUntil func(start time.Time, elapsed, d time.Duration)

	mu     sync.Mutex
	data   *storeData
	closed bool
	// checking holds the names whose login attempt is being checked.
	checking map[string]struct{}
}

// storeDirSync fsyncs a directory Open created a directory in (nil:
// atomicfile.SyncDir); tests observe it.
var storeDirSync func(dir string) error

// Open opens (or, on first use, creates) the store in cfg.Dir. It fails
// with a *StoreError (ErrStoreCorrupt, ErrStoreUndecryptable, ErrStoreKey)
// rather than ever starting from an empty store over an unreadable one,
// and with ErrStoreBusy while another process has it open.
func Open(cfg Config) (*Store, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	if err := atomicfile.MkdirAll(cfg.Dir, 0o700, storeDirSync); err != nil {
		return nil, fmt.Errorf("auth: store directory: %w", err)
	}
	s := &Store{cfg: cfg, checking: map[string]struct{}{}, path: filepath.Join(cfg.Dir, StoreFile),
		sources: newSourceLimiter(cfg.SourceLimit), hashes: make(chan struct{}, cfg.MaxConcurrentHashes),
		delayKey: make([]byte, 32), waitUntil: sleepUntil}
	if _, err := rand.Read(s.delayKey); err != nil {
		return nil, fmt.Errorf("auth: failure delay key: %w", err)
	}
	if err := s.lockDir(); err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			s.lock.Close()
		}
	}()
	atomicfile.Clean(s.path)
	_, err := os.Stat(s.path)
	exists := err == nil
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("auth: %w", err)
	}
	key, err := storeKey(cfg.Sealer, exists, s.path)
	if err != nil {
		return nil, err
	}
	if s.aead, err = newAEAD(key); err != nil {
		return nil, fmt.Errorf("auth: store key: %w", err)
	}
	d := &storeData{}
	err = readStoreFile(s.path, s.aead, d)
	switch {
	case errors.Is(err, os.ErrNotExist):
		d = &storeData{Version: storeVersion, Users: map[string]*userRecord{}}
	case err != nil:
		return nil, err
	}
	if d.Users == nil {
		d.Users = map[string]*userRecord{}
	}
	s.data = d
	if s.dummy, err = dummyHash(cfg.Argon2); err != nil {
		return nil, err
	}
	ok = true
	return s, nil
}

func (s *Store) lockDir() error {
	p := filepath.Join(s.cfg.Dir, LockFile)
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("auth: lock %s: %w", p, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return fmt.Errorf("auth: %s: %w (is the proxy running? stop it or use its admin socket)", p, ErrStoreBusy)
		}
		return fmt.Errorf("auth: lock %s: %w", p, err)
	}
	s.lock = f
	return nil
}

// Close releases the store directory.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	return s.lock.Close()
}

// Path is the store file.
func (s *Store) Path() string { return s.path }

// errClosed is returned by every operation after Close.
var errClosed = errors.New("auth: store is closed")

// commitLocked writes a new store in which name's record is u (nil:
// removed) and, only when the write succeeded, makes it current. Callers
// hold s.mu and pass a record they own (a clone).
func (s *Store) commitLocked(name string, u *userRecord, now time.Time) error {
	if s.closed {
		return errClosed
	}
	next := &storeData{Version: storeVersion, Users: maps.Clone(s.data.Users), LastGeneration: s.data.LastGeneration}
	if u == nil {
		delete(next.Users, name)
	} else {
		u.Updated = now
		next.Users[name] = u
		next.LastGeneration = max(next.LastGeneration, u.Generation)
	}
	for _, r := range s.data.Revoked {
		if now.Before(r.NotAfter) && (u != nil || r.User != name) {
			next.Revoked = append(next.Revoked, r)
		}
	}
	if err := writeStoreFile(s.path, s.aead, next); err != nil {
		return err
	}
	s.data = next
	return nil
}

// nextGenerationLocked is a generation no certificate has ever carried.
func (s *Store) nextGenerationLocked() uint64 { return s.data.LastGeneration + 1 }

// modify applies f to a clone of name's record and commits it. f gets
// the generation a bump must use.
func (s *Store) modify(name string, f func(u *userRecord, nextGen uint64, now time.Time) error) (*userRecord, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.data.Users[name]
	if cur == nil {
		return nil, fmt.Errorf("auth: user %q: %w", name, ErrUnknownUser)
	}
	now := s.cfg.Now()
	u := cur.clone()
	if err := f(u, s.nextGenerationLocked(), now); err != nil {
		return nil, err
	}
	if err := s.commitLocked(name, u, now); err != nil {
		return nil, err
	}
	return u.clone(), nil
}

func (s *Store) emit(e AuthEvent) {
	if e.Time.IsZero() {
		e.Time = s.cfg.Now()
	}
	s.cfg.Events.AuthEvent(e)
}

func (s *Store) revoked(user string) {
	if s.cfg.OnRevoke != nil {
		s.cfg.OnRevoke(user)
	}
}

// lockExpired reports whether u is locked with an auto-unlock time that
// has passed.
func lockExpired(u *userRecord, now time.Time) bool {
	return u.Locked && !u.LockedUntil.IsZero() && !now.Before(u.LockedUntil)
}

// User returns one user's public record.
func (s *Store) User(name string) (UserInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.data.Users[name]
	if u == nil {
		return UserInfo{}, fmt.Errorf("auth: user %q: %w", name, ErrUnknownUser)
	}
	i := u.info()
	if lockExpired(u, s.cfg.Now()) {
		i.Locked, i.LockedUntil, i.Failures = false, time.Time{}, 0
	}
	return i, nil
}

// Users lists every user, sorted by name.
func (s *Store) Users() []UserInfo {
	s.mu.Lock()
	names := make([]string, 0, len(s.data.Users))
	for n := range s.data.Users {
		names = append(names, n)
	}
	s.mu.Unlock()
	sort.Strings(names)
	var out []UserInfo
	for _, n := range names {
		if i, err := s.User(n); err == nil {
			out = append(out, i)
		}
	}
	return out
}

// IssuerForSite is the issuer name shown in authenticator apps for the
// gate of site (Config.Issuer), so the CLI and the proxy enrol alike.
func IssuerForSite(site string) string {
	if site == "" {
		return "otgate"
	}
	return "otgate " + site
}
