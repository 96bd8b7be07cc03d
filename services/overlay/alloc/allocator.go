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

// Allocator owns the allocation table and its state file.
type Allocator struct {
	path string
	hook atomicfile.Hook
	// syncDir fsyncs a directory (nil: atomicfile.SyncDir); tests
	// observe it.
	syncDir func(string) error

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

// Open loads the table from path (none yet: empty). A damaged file is
// ErrCorruptState: the allocator refuses to start rather than renumber.
// Leftover temporary files of an interrupted write are removed.
func Open(path string, opts ...Option) (*Allocator, error) {
	a := &Allocator{path: path}
	for _, o := range opts {
		o(a)
	}
	if err := atomicfile.Clean(path); err != nil {
		return nil, fmt.Errorf("alloc: %w", err)
	}
	t, sum, err := readTable(path)
	if err != nil {
		return nil, fmt.Errorf("alloc: %w", err)
	}
	a.t, a.onDisk = t, sum
	return a, nil
}

// ReadTable reads the allocation table persisted at path, sorted by
// asset, for a reader other than the overlay service (segment's show). A
// missing file (nothing allocated yet) is an empty table; a damaged one
// is ErrCorruptState.
//
// It opens the file read-only and decodes it, nothing more: unlike Open
// it removes no leftover temporary file (one may be the running overlay
// service's write in progress), and it takes no lock (the service takes
// none on the file either). The read needs none to be consistent: the
// file is never written in place but replaced by a rename (atomicfile),
// so the opened file is one whole version, old or new, even when it is
// replaced while being read.
func ReadTable(path string) ([]Entry, error) {
	t, _, err := readTable(path)
	if err != nil {
		return nil, fmt.Errorf("alloc: %w", err)
	}
	return t.entries, nil
}

// Apply makes the table serve exactly reqs: existing assets keep their
// addresses, new ones get one, removed ones are quarantined. The new
// table is persisted before it is used; on any error (bad request,
// conflict, exhausted pool, write failure) nothing changes.
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
	if err := atomicfile.WriteHooked(a.path, b, 0o600, a.hook); err != nil {
		return Diff{}, fmt.Errorf("alloc: persist: %w", err)
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
