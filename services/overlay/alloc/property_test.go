package alloc

import (
	"flag"
	"fmt"
	"math/rand"
	"net/netip"
	"path/filepath"
	"sort"
	"testing"
	"time"
)

var (
	propSeed  = flag.Int64("alloc.seed", 20261201, "seed of the randomized allocator property test")
	propSteps = flag.Int("alloc.steps", 300, "policy edits per property test run")
)

// TestProperties drives the allocator through random policy edits (assets
// added, removed, moved between zones, pinned and unpinned; zones added;
// time passing) and checks after every edit:
//   - no address is used twice (entries, quarantine, gate);
//   - exactly the requested assets have addresses;
//   - an asset keeps its address across edits unless its pin changed;
//   - a new unpinned address lies in its zone's pool and is not reserved;
//   - a released address goes to no other asset before its quarantine ends;
//   - reloading from disk gives the same table.
//
// Rerun a failure with -alloc.seed=N.
func TestProperties(t *testing.T) {
	seed := *propSeed
	rng := rand.New(rand.NewSource(seed))
	defer func() {
		if t.Failed() {
			t.Logf("property test seed: %d (rerun with -alloc.seed=%d)", seed, seed)
		}
	}()
	path := filepath.Join(t.TempDir(), "alloc.cbor")
	a := open(t, path)
	cfg := Config{Prefix: netip.MustParsePrefix("100.64.0.0/20"), PoolSize: 64, Quarantine: time.Hour,
		Pools: map[string]PoolSpec{"fixed": {Prefix: netip.MustParsePrefix("100.64.15.0/26")}, "big": {Size: 512}}}
	zones := []string{"fixed", "big", "z1"}
	want := map[string]Request{}
	prev := map[string]Entry{}
	released := map[netip.Addr]Held{} // last release of each address
	now := t0
	nextAsset := 0
	applied, refused := 0, 0
	defer func() {
		t.Logf("seed %d: %d edits applied, %d refused, %d assets at the end", seed, applied, refused, len(want))
	}()

	for step := 0; step < *propSteps; step++ {
		now = now.Add(time.Duration(rng.Intn(20)) * time.Minute)
		// A random edit.
		for n := rng.Intn(6); n > 0; n-- {
			switch op := rng.Intn(10); {
			case op < 4: // add
				nextAsset++
				r := Request{Asset: fmt.Sprintf("a%04d", nextAsset), Zone: zones[rng.Intn(len(zones))]}
				if rng.Intn(8) == 0 {
					r.Pinned = randomFree(rng, cfg, a, want)
				}
				want[r.Asset] = r
			case op < 7: // remove
				if k := pick(rng, want); k != "" {
					delete(want, k)
				}
			case op == 7: // move zone (keeps the address)
				if k := pick(rng, want); k != "" {
					r := want[k]
					r.Zone = zones[rng.Intn(len(zones))]
					want[k] = r
				}
			case op == 8: // pin or unpin
				if k := pick(rng, want); k != "" {
					r := want[k]
					if r.Pinned.IsValid() {
						r.Pinned = netip.Addr{}
					} else {
						r.Pinned = randomFree(rng, cfg, a, want)
					}
					want[k] = r
				}
			case op == 9: // a new zone
				if len(zones) < 12 {
					zones = append(zones, fmt.Sprintf("z%d", len(zones)))
				}
			}
		}
		var reqs []Request
		for _, r := range want {
			reqs = append(reqs, r)
		}
		sort.Slice(reqs, func(i, j int) bool { return reqs[i].Asset < reqs[j].Asset })
		rng.Shuffle(len(reqs), func(i, j int) { reqs[i], reqs[j] = reqs[j], reqs[i] })
		before := fmt.Sprint(a.Table(), a.Quarantined())
		if _, err := a.Apply(cfg, reqs, now); err != nil {
			refused++
			// A refusal (exhausted pool, quarantined pin) is fine if it
			// changed nothing; undo the edit by restoring the last table.
			if after := fmt.Sprint(a.Table(), a.Quarantined()); after != before {
				t.Fatalf("step %d: refused Apply (%v) changed the table", step, err)
			}
			want = map[string]Request{}
			for _, e := range a.Table() {
				r := Request{Asset: e.Asset, Zone: e.Zone}
				if e.Pinned {
					r.Pinned = e.Addr
				}
				want[e.Asset] = r
			}
			continue
		}
		applied++
		checkInvariants(t, step, cfg, a, want, prev, released, now)
		for _, h := range a.Quarantined() {
			released[h.Addr] = h
		}
		prev = map[string]Entry{}
		for _, e := range a.Table() {
			prev[e.Asset] = e
		}
		if step%25 == 0 {
			b := open(t, path)
			if got, w := fmt.Sprint(b.Table(), b.Quarantined(), b.Pools()), fmt.Sprint(a.Table(), a.Quarantined(), a.Pools()); got != w {
				t.Fatalf("step %d: reload differs:\n got %s\nwant %s", step, got, w)
			}
			a = b
		}
	}
}

func checkInvariants(t *testing.T, step int, cfg Config, a *Allocator, want map[string]Request, prev map[string]Entry, released map[netip.Addr]Held, now time.Time) {
	t.Helper()
	cfg = cfg.withDefaults()
	seen := map[netip.Addr]string{cfg.Gate: "gate"}
	table := a.Table()
	if len(table) != len(want) {
		t.Fatalf("step %d: %d entries for %d requested assets", step, len(table), len(want))
	}
	pools := map[string]netip.Prefix{}
	for _, p := range a.Pools() {
		pools[p.Zone] = p.Prefix
	}
	for _, e := range table {
		r, ok := want[e.Asset]
		if !ok {
			t.Fatalf("step %d: unrequested asset %q in the table", step, e.Asset)
		}
		if other, dup := seen[e.Addr]; dup {
			t.Fatalf("step %d: %s given to %q and %q", step, e.Addr, e.Asset, other)
		}
		seen[e.Addr] = e.Asset
		if r.Pinned.IsValid() && e.Addr != r.Pinned {
			t.Fatalf("step %d: %q pinned to %s has %s", step, e.Asset, r.Pinned, e.Addr)
		}
		old, existed := prev[e.Asset]
		switch {
		case existed && !r.Pinned.IsValid() && old.Addr != e.Addr:
			t.Fatalf("step %d: %q renumbered from %s to %s", step, e.Asset, old.Addr, e.Addr)
		case existed && r.Pinned.IsValid() && old.Addr != e.Addr && r.Pinned != e.Addr:
			t.Fatalf("step %d: %q moved to %s, not its pin %s", step, e.Asset, e.Addr, r.Pinned)
		case !existed && !r.Pinned.IsValid():
			h, was := released[e.Addr]
			if was && h.Asset == e.Asset {
				break // its own address back from quarantine
			}
			if p := pools[r.Zone]; !p.Contains(e.Addr) {
				t.Fatalf("step %d: new %q got %s outside its zone %q pool %s", step, e.Asset, e.Addr, r.Zone, p)
			}
			v := u32(e.Addr)
			if s := spanOf(pools[r.Zone]); v == s.first || v == s.last || broadcastLike(v) {
				t.Fatalf("step %d: %q got the reserved address %s", step, e.Asset, e.Addr)
			}
		}
		if h, was := released[e.Addr]; was && h.Asset != e.Asset && now.Before(h.Until) {
			t.Fatalf("step %d: %s released by %q until %s went to %q at %s", step, e.Addr, h.Asset, h.Until, e.Asset, now)
		}
	}
	for _, h := range a.Quarantined() {
		if other, dup := seen[h.Addr]; dup {
			t.Fatalf("step %d: quarantined %s is also %q", step, h.Addr, other)
		}
		seen[h.Addr] = "quarantine"
	}
}

func pick(rng *rand.Rand, m map[string]Request) string {
	if len(m) == 0 {
		return ""
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys[rng.Intn(len(keys))]
}

// randomFree picks an address of the prefix that no requested asset pins
// or holds; a third of the time a quarantined one (Apply must refuse it
// unless the asset released it itself).
func randomFree(rng *rand.Rand, cfg Config, a *Allocator, want map[string]Request) netip.Addr {
	taken := map[netip.Addr]bool{}
	for _, r := range want {
		taken[r.Pinned] = true
	}
	for _, e := range a.Table() {
		taken[e.Addr] = true
	}
	if q := a.Quarantined(); len(q) > 0 && rng.Intn(3) == 0 {
		return q[rng.Intn(len(q))].Addr // Apply must refuse this pin
	}
	s := spanOf(cfg.Prefix)
	for {
		v := s.first + 2 + uint32(rng.Int63n(int64(s.size()-3)))
		if ad := fromU32(v); !taken[ad] {
			return ad
		}
	}
}
