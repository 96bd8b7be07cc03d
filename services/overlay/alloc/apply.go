package alloc

import (
	"errors"
	"fmt"
	"math/bits"
	"net/netip"
	"sort"
	"time"
)

// table is one complete allocation state.
type table struct {
	prefix  netip.Prefix
	gate    netip.Addr
	pools   []Pool  // by zone
	entries []Entry // by asset
	held    []Held  // by address
}

func checkConfig(cfg *Config) error {
	if !cfg.Prefix.Addr().Is4() || cfg.Prefix.Bits() < 8 || cfg.Prefix.Bits() > 28 {
		return fmt.Errorf("%w: overlay prefix %s: want IPv4 between /8 and /28", ErrBadRequest, cfg.Prefix)
	}
	s := spanOf(cfg.Prefix)
	if g := u32(cfg.Gate); !cfg.Gate.Is4() || !cfg.Prefix.Contains(cfg.Gate) || g == s.first || g == s.last {
		return fmt.Errorf("%w: gate address %s is not a usable address of the overlay prefix %s", ErrBadRequest, cfg.Gate, cfg.Prefix)
	}
	if bits.OnesCount(uint(cfg.PoolSize)) != 1 || cfg.PoolSize < 4 {
		return fmt.Errorf("%w: pool size %d is not a power of two of at least 4", ErrBadRequest, cfg.PoolSize)
	}
	if cfg.Quarantine < 0 {
		return fmt.Errorf("%w: negative quarantine %s", ErrBadRequest, cfg.Quarantine)
	}
	if cfg.Quarantine > MaxQuarantine {
		return fmt.Errorf("%w: quarantine %s is longer than %d days (100 years)", ErrBadRequest, cfg.Quarantine, MaxQuarantine/(24*time.Hour))
	}
	return nil
}

// plan computes the table that serves reqs, starting from old. It never
// modifies old.
func plan(old *table, cfg Config, reqs []Request, now time.Time) (*table, Diff, error) {
	var diff Diff
	if err := checkConfig(&cfg); err != nil {
		return nil, diff, err
	}
	if old.prefix.IsValid() && old.prefix != cfg.Prefix {
		// Only a quarantine still running holds the old prefix: one that
		// has ended is dropped by this very Apply (counting it refused the
		// change for good, as no Apply with the new prefix could drop it).
		live, last := 0, time.Time{}
		for _, h := range old.held {
			if h.Until.After(now) {
				live++
				if h.Until.After(last) {
					last = h.Until
				}
			}
		}
		if len(old.entries) > 0 || live > 0 {
			wait := ""
			if live > 0 {
				wait = fmt.Sprintf("; the last quarantine ends at %s", last.Format(time.RFC3339))
			}
			return nil, diff, fmt.Errorf("%w: from %s to %s while %d assets and %d quarantined addresses use the old prefix; renumbering is never silent: remove the assets and let their quarantine end (or remove the allocator state) first%s", ErrPrefixChanged, old.prefix, cfg.Prefix, len(old.entries), live, wait)
		}
	}
	whole := spanOf(cfg.Prefix)
	byName := make(map[string]*Request, len(reqs))
	var errs []error
	for i := range reqs {
		r := &reqs[i]
		switch {
		case r.Asset == "" || r.Zone == "":
			errs = append(errs, fmt.Errorf("%w: request %d: asset and zone must be named (asset %q, zone %q)", ErrBadRequest, i, r.Asset, r.Zone))
			continue
		case byName[r.Asset] != nil:
			errs = append(errs, fmt.Errorf("%w: asset %q requested twice", ErrBadRequest, r.Asset))
			continue
		case r.Pinned.IsValid() && (!r.Pinned.Is4() || !cfg.Prefix.Contains(r.Pinned) || u32(r.Pinned) == whole.first || u32(r.Pinned) == whole.last):
			errs = append(errs, fmt.Errorf("%w: asset %q: pinned address %s is not a usable address of the overlay prefix %s", ErrBadRequest, r.Asset, r.Pinned, cfg.Prefix))
		case r.Pinned == cfg.Gate:
			errs = append(errs, fmt.Errorf("%w: asset %q: pinned address %s is the gate's own address", ErrConflict, r.Asset, r.Pinned))
		}
		byName[r.Asset] = r
	}
	if len(errs) > 0 {
		return nil, diff, errors.Join(errs...)
	}

	used := newUsedSet(cfg.Prefix)
	used.set(u32(cfg.Gate))
	owner := map[netip.Addr]string{} // for conflict messages

	// Quarantine: drop what has ended, keep the rest.
	held := make([]Held, 0, len(old.held))
	heldBy := map[string][]int{}    // asset -> indexes in held of what it released
	unheld := map[netip.Addr]bool{} // quarantine entries given back to their asset
	for _, h := range old.held {
		if !h.Until.After(now) {
			diff.Expired = append(diff.Expired, h)
			continue
		}
		if h.Addr == cfg.Gate {
			if h.GateHeld() {
				continue // the gate moves back to its own former address
			}
			errs = append(errs, fmt.Errorf("%w: gate address %s is quarantined until %s (released by %s)", ErrConflict, cfg.Gate, h.Until.Format(time.RFC3339), h.ReleasedBy()))
		}
		held = append(held, h)
	}
	// The gate moved: its old address is quarantined like a released
	// endpoint, never handed to an asset at once (a client still connected
	// to, or aiming at, the old gate address would reach that asset's
	// endpoint). After a prefix change (allowed only with no asset and no
	// quarantine left) only an old gate address inside the new prefix can
	// be handed out, so only that one is held.
	if old.prefix.IsValid() && old.gate.IsValid() && old.gate != cfg.Gate && cfg.Prefix.Contains(old.gate) {
		h := Held{Addr: old.gate, Until: now.Add(cfg.Quarantine)}
		held = append(held, h)
		diff.Released = append(diff.Released, h)
	}
	release := func(e Entry) {
		h := Held{Addr: e.Addr, Asset: e.Asset, Zone: e.Zone, Until: now.Add(cfg.Quarantine)}
		held = append(held, h)
		diff.Released = append(diff.Released, h)
	}

	// Existing assets keep their address unless their pin moved them.
	entries := make([]Entry, 0, len(reqs))
	var moving []*Request
	for _, e := range old.entries {
		r := byName[e.Asset]
		if r == nil {
			release(e)
			continue
		}
		if r.Pinned.IsValid() && r.Pinned != e.Addr {
			release(e)
			moving = append(moving, r)
			continue
		}
		if e.Addr == cfg.Gate {
			errs = append(errs, fmt.Errorf("%w: gate address %s is held by asset %q", ErrConflict, cfg.Gate, e.Asset))
		}
		e.Zone, e.Pinned = r.Zone, r.Pinned.IsValid()
		entries = append(entries, e)
		used.set(u32(e.Addr))
		owner[e.Addr] = "asset " + e.Asset
	}
	for i, h := range held {
		used.set(u32(h.Addr))
		owner[h.Addr] = fmt.Sprintf("quarantined until %s, released by %s", h.Until.Format(time.RFC3339), h.ReleasedBy())
		heldBy[h.Asset] = append(heldBy[h.Asset], i)
	}
	// ownHeld reports whether asset released a (one asset may hold several
	// quarantine entries: a pin changed and changed back); latestHeld is
	// the address it released last (the latest end of quarantine), which
	// it gets back when it returns unpinned.
	ownHeld := func(asset string, a netip.Addr) bool {
		for _, i := range heldBy[asset] {
			if held[i].Addr == a {
				return true
			}
		}
		return false
	}
	latestHeld := func(asset string) (netip.Addr, bool) {
		var best *Held
		for _, i := range heldBy[asset] {
			if h := &held[i]; !unheld[h.Addr] && (best == nil || !h.Until.Before(best.Until)) {
				best = h
			}
		}
		if best == nil {
			return netip.Addr{}, false
		}
		return best.Addr, true
	}
	if len(errs) > 0 {
		return nil, diff, errors.Join(errs...)
	}

	// New assets, in name order: pinned ones first so an allocation never
	// takes an address a pin asks for.
	known := make(map[string]bool, len(old.entries))
	for _, e := range old.entries {
		known[e.Asset] = true
	}
	var fresh []*Request
	for i := range reqs {
		if !known[reqs[i].Asset] {
			fresh = append(fresh, &reqs[i])
		}
	}
	sort.Slice(fresh, func(i, j int) bool { return fresh[i].Asset < fresh[j].Asset })
	sort.Slice(moving, func(i, j int) bool { return moving[i].Asset < moving[j].Asset })
	take := func(r *Request, a netip.Addr) {
		e := Entry{Asset: r.Asset, Zone: r.Zone, Addr: a, Pinned: r.Pinned.IsValid()}
		entries = append(entries, e)
		used.set(u32(a))
		owner[a] = "asset " + r.Asset
		if known[r.Asset] {
			diff.Moved = append(diff.Moved, e)
		} else {
			diff.Added = append(diff.Added, e)
		}
	}
	pinned := append(append([]*Request(nil), moving...), fresh...)
	for _, r := range pinned {
		if !r.Pinned.IsValid() {
			continue
		}
		a := r.Pinned
		if ownHeld(r.Asset, a) && !unheld[a] {
			unheld[a] = true // the asset takes back its own quarantined address
			used.clear(u32(a))
		}
		if used.has(u32(a)) {
			who := owner[a]
			if a == cfg.Gate {
				who = "the gate"
			}
			errs = append(errs, fmt.Errorf("%w: asset %q: pinned address %s is taken (%s)", ErrConflict, r.Asset, a, who))
			continue
		}
		take(r, a)
	}

	// Pools: keep those of zones still in use, carve for zones that need one.
	keep := map[string]bool{}
	for _, r := range reqs {
		keep[r.Zone] = true
	}
	var need []string
	needSet := map[string]bool{}
	for _, r := range fresh {
		if !r.Pinned.IsValid() && !needSet[r.Zone] {
			needSet[r.Zone] = true
			need = append(need, r.Zone)
		}
	}
	pools, err := carve(&cfg, old.pools, keep, need)
	if err != nil {
		return nil, diff, errors.Join(append(errs, err)...)
	}
	poolOf := map[string]*cursor{}
	for i := range pools {
		poolOf[pools[i].Zone] = &cursor{pool: pools[i], next: spanOf(pools[i].Prefix).first}
	}

	// Unpinned new assets: their own quarantined address if they had one,
	// else the lowest free address of the zone's pool.
	exhausted := map[string]bool{}
	for _, r := range fresh {
		if r.Pinned.IsValid() {
			continue
		}
		if a, ok := latestHeld(r.Asset); ok {
			unheld[a] = true
			take(r, a)
			continue
		}
		c := poolOf[r.Zone]
		a, ok := c.alloc(used)
		if !ok {
			if !exhausted[r.Zone] {
				exhausted[r.Zone] = true
				errs = append(errs, c.exhausted(r, used, held))
			}
			continue
		}
		take(r, a)
	}
	if len(errs) > 0 {
		return nil, diff, errors.Join(errs...)
	}

	var keptHeld []Held
	for _, h := range held {
		if !unheld[h.Addr] {
			keptHeld = append(keptHeld, h)
		}
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Asset < entries[j].Asset })
	sort.Slice(keptHeld, func(i, j int) bool { return u32(keptHeld[i].Addr) < u32(keptHeld[j].Addr) })
	return &table{prefix: cfg.Prefix, gate: cfg.Gate, pools: pools, entries: entries, held: keptHeld}, diff, nil
}

// cursor hands out a pool's free addresses from low to high.
type cursor struct {
	pool Pool
	next uint32
}

func (c *cursor) alloc(used *usedSet) (netip.Addr, bool) {
	s := spanOf(c.pool.Prefix)
	for v := max(c.next, s.first+1); v < s.last; v++ {
		if broadcastLike(v) || used.has(v) {
			continue
		}
		c.next = v + 1
		return fromU32(v), true
	}
	c.next = s.last
	return netip.Addr{}, false
}

func (c *cursor) exhausted(r *Request, used *usedSet, held []Held) error {
	s := spanOf(c.pool.Prefix)
	usable, inUse, quarantined := 0, 0, 0
	for v := s.first + 1; v < s.last; v++ {
		if broadcastLike(v) {
			continue
		}
		usable++
		if used.has(v) {
			inUse++
		}
	}
	for _, h := range held {
		if c.pool.Prefix.Contains(h.Addr) {
			quarantined++
		}
	}
	return fmt.Errorf("%w: zone %q: pool %s has no free address for asset %q (%d usable, %d taken of which %d quarantined); give the zone a larger pool (overlay.pools.%s.size) or wait for the quarantine to end",
		ErrExhausted, r.Zone, c.pool.Prefix, r.Asset, usable, inUse, quarantined, r.Zone)
}
