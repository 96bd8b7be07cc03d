package alloc

import (
	"crypto/sha256"
	"fmt"
	"net/netip"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/otgate/otgate/internal/atomicfile"
)

// DefaultStatePath is where the device keeps the allocation table.
const DefaultStatePath = "/perm/overlay/alloc.cbor"

// StateFileMode is the state files' mode: the group may read them. On
// the appliance the directory is the proxy's group's (set-group-ID, made
// so by init), and the proxy reads the table to know which asset a
// Modbus/TCP Security connection to an overlay endpoint is for. Nothing
// in it is secret: asset names and their overlay addresses.
const StateFileMode = 0o640

// Allocator owns the allocation table and its state file.
type Allocator struct {
	path string
	hook atomicfile.Hook
	// syncDir fsyncs a directory (nil: atomicfile.SyncDir); tests
	// observe it.
	syncDir func(string) error
	logf    func(format string, args ...any)

	mu sync.Mutex
	t  *table
	// onDisk is the sha256 of the bytes last read or written, so an
	// Apply that changes nothing does not rewrite the file (flash wear).
	onDisk [32]byte
}

// Option tunes Open.
type Option func(*Allocator)

// WithWriteHook makes every state write call hook after each step
// (tests simulate a crash at any point with it).
func WithWriteHook(h atomicfile.Hook) Option { return func(a *Allocator) { a.hook = h } }

// WithLog gives the allocator a log for what it finds and repairs in its
// state files at Open (a copy restored from the other).
func WithLog(logf func(format string, args ...any)) Option {
	return func(a *Allocator) { a.logf = logf }
}

// Open loads the table from path (none yet: empty). The state is kept
// in two copies, the file at path and its mirror (MirrorPath): a copy
// missing, damaged or out of date is rewritten from the other, sound one
// (logged); if it cannot be, Open fails. When a copy exists but neither
// is sound, Open fails (ErrCorruptState for a damaged one): the
// allocator refuses to start rather than renumber. Leftover temporary
// files of an interrupted write are removed.
func Open(path string, opts ...Option) (*Allocator, error) {
	a := &Allocator{path: path, logf: func(string, ...any) {}}
	for _, o := range opts {
		o(a)
	}
	for _, p := range []string{path, MirrorPath(path)} {
		if err := atomicfile.Clean(p); err != nil {
			return nil, fmt.Errorf("alloc: %w", err)
		}
	}
	l, err := loadState(path)
	if err != nil {
		return nil, fmt.Errorf("alloc: %w", err)
	}
	if l.rewrite != "" {
		a.logf("overlay: alloc: %s", l.note)
		if err := atomicfile.WriteHooked(l.rewrite, l.use.b, StateFileMode, a.hook); err != nil {
			return nil, fmt.Errorf("alloc: %s, and that failed: %w; refusing to run with one good copy", l.note, err)
		}
	}
	a.t = l.use.t
	if l.use.b != nil {
		a.onDisk = sha256.Sum256(l.use.b)
	}
	return a, nil
}

// ReadTable reads the allocation table persisted at path, sorted by
// asset, for a reader other than the overlay service (segment's show). It
// picks the copy the service's next start would run from (the state file,
// or its mirror when the state file is lost or damaged on its own; see
// loadState), so it shows what the gate serves. Both copies missing
// (nothing allocated yet) is an empty table; neither sound while one
// exists is an error (ErrCorruptState when a copy is damaged). Restoring
// the bad copy is the service's job, at its next start (Open).
//
// It opens the files read-only and decodes them, nothing more: unlike
// Open it removes no leftover temporary file (one may be the running
// overlay service's write in progress), and it takes no lock (the
// service takes none on the files either). The read needs none to be
// consistent: the files are never written in place but replaced by a
// rename (atomicfile), so each opened file is one whole version, old or
// new, even when it is replaced while being read; the state file is
// written first, so a sound state file is never older than the mirror.
func ReadTable(path string) ([]Entry, error) {
	l, err := loadState(path)
	if err != nil {
		return nil, fmt.Errorf("alloc: %w", err)
	}
	return l.use.t.entries, nil
}

// Apply makes the table serve exactly reqs: existing assets keep their
// addresses, new ones get one, removed ones are quarantined. The new
// table is persisted (the state file, then its mirror) before it is
// used; on any error (bad request, conflict, exhausted pool, write
// failure) nothing changes in memory. A write that fails after the
// state file was replaced leaves the new table there, as a power cut
// would; the next Apply or Open brings the mirror up to date.
func (a *Allocator) Apply(cfg Config, reqs []Request, now time.Time) (Diff, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	cfg = cfg.withDefaults()
	next, diff, err := plan(a.t, cfg, reqs, now)
	if err != nil {
		return Diff{}, fmt.Errorf("alloc: %w", err)
	}
	b, err := encodeTable(next)
	if err != nil {
		return Diff{}, fmt.Errorf("alloc: encode: %w", err)
	}
	sum := sha256.Sum256(b)
	if sum == a.onDisk {
		a.t = next
		return diff, nil
	}
	// The directory too is made durably: a state file fsynced in a
	// directory whose own entry was never fsynced can vanish with it at
	// a power cut, and the next boot would allocate afresh.
	if err := atomicfile.MkdirAll(filepath.Dir(a.path), 0o700, a.syncDir); err != nil {
		return Diff{}, fmt.Errorf("alloc: %w", err)
	}
	// The state file first, then its mirror: the new table counts once
	// both hold it. A failure between the two leaves the state file
	// newer, as a power cut there would, and Open then brings the mirror
	// up to date; in memory nothing changes.
	// After a failed write the files may hold the table that was not
	// served (the state file replaced, the mirror not): what is on disk
	// is unknown, so the next Apply writes whatever it plans, even the
	// table served now (skipping it would leave the unserved one for
	// the next boot).
	if err := atomicfile.WriteHooked(a.path, b, StateFileMode, a.hook); err != nil {
		a.onDisk = [sha256.Size]byte{}
		return Diff{}, fmt.Errorf("alloc: persist: %w", err)
	}
	if err := atomicfile.WriteHooked(MirrorPath(a.path), b, StateFileMode, a.hook); err != nil {
		a.onDisk = [sha256.Size]byte{}
		return Diff{}, fmt.Errorf("alloc: persist the mirror: %w", err)
	}
	a.t, a.onDisk = next, sum
	return diff, nil
}

// Table returns the allocation table, sorted by asset.
func (a *Allocator) Table() []Entry {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]Entry(nil), a.t.entries...)
}

// Quarantined returns the quarantined addresses, sorted by address.
func (a *Allocator) Quarantined() []Held {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]Held(nil), a.t.held...)
}

// Pools returns the carved pools, sorted by zone.
func (a *Allocator) Pools() []Pool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]Pool(nil), a.t.pools...)
}

// Gate returns the gate's overlay address of the current table (the
// zero Addr before the first Apply).
func (a *Allocator) Gate() (gate netip.Addr, prefix netip.Prefix) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.t.gate, a.t.prefix
}

func sortStrings(s []string) { sort.Strings(s) }
