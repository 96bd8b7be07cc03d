package alloc

import (
	"fmt"
	"math/bits"
	"net/netip"
	"sort"
)

// poolSize is the zone's configured pool size in addresses.
func poolSize(cfg *Config, zone string) int {
	if s, ok := cfg.Pools[zone]; ok && s.Size != 0 {
		return s.Size
	}
	return cfg.PoolSize
}

// carve decides every needed zone's pool: explicit prefixes from cfg
// first, then pools remembered from before (when they still match the
// configured size and collide with nothing), then new pools, first fit
// in zone-name order, aligned to their size.
func carve(cfg *Config, prev []Pool, keep map[string]bool, need []string) ([]Pool, error) {
	var out []Pool
	taken := func(p netip.Prefix) (string, bool) {
		for _, q := range out {
			if q.Prefix.Overlaps(p) {
				return q.Zone, true
			}
		}
		return "", false
	}
	have := map[string]bool{}
	explicit := make([]string, 0, len(cfg.Pools))
	for z, s := range cfg.Pools {
		if s.Prefix.IsValid() {
			explicit = append(explicit, z)
		}
	}
	sort.Strings(explicit)
	for _, z := range explicit {
		p := cfg.Pools[z].Prefix.Masked()
		if !cfg.Prefix.Contains(p.Addr()) || p.Bits() < cfg.Prefix.Bits() || p.Bits() > 30 {
			return nil, fmt.Errorf("%w: zone %q pool %s is not a /30 or larger inside the overlay prefix %s", ErrBadRequest, z, p, cfg.Prefix)
		}
		if other, clash := taken(p); clash {
			return nil, fmt.Errorf("%w: zone %q pool %s overlaps zone %q's pool", ErrBadRequest, z, p, other)
		}
		out = append(out, Pool{Zone: z, Prefix: p})
		have[z] = true
	}
	for _, p := range prev {
		if have[p.Zone] || !keep[p.Zone] || cfg.Pools[p.Zone].Prefix.IsValid() {
			continue
		}
		size := poolSize(cfg, p.Zone)
		if p.Prefix.Bits() != 32-bits.TrailingZeros(uint(size)) || !cfg.Prefix.Contains(p.Prefix.Addr()) {
			continue // resized: carve anew
		}
		if _, clash := taken(p.Prefix); clash {
			continue
		}
		out = append(out, p)
		have[p.Zone] = true
	}
	sorted := append([]string(nil), need...)
	sort.Strings(sorted)
	whole := spanOf(cfg.Prefix)
	for _, z := range sorted {
		if have[z] {
			continue
		}
		size := poolSize(cfg, z)
		if bits.OnesCount(uint(size)) != 1 || size < 4 || uint64(size) > whole.size() {
			return nil, fmt.Errorf("%w: zone %q pool size %d (want a power of two from 4 to %d)", ErrBadRequest, z, size, whole.size())
		}
		plen := 32 - bits.TrailingZeros(uint(size))
		found := false
		for start := uint64(whole.first); start+uint64(size)-1 <= uint64(whole.last); start += uint64(size) {
			p := netip.PrefixFrom(fromU32(uint32(start)), plen)
			if _, clash := taken(p); !clash {
				out = append(out, Pool{Zone: z, Prefix: p})
				have[z] = true
				found = true
				break
			}
		}
		if !found {
			return nil, fmt.Errorf("%w: zone %q needs a pool of %d addresses, and the overlay prefix %s has no free aligned block left (pools: %s)", ErrNoRoom, z, size, cfg.Prefix, poolList(out))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Zone < out[j].Zone })
	return out, nil
}

func poolList(ps []Pool) string {
	s := ""
	for i, p := range ps {
		if i > 0 {
			s += ", "
		}
		s += p.Zone + "=" + p.Prefix.String()
	}
	return s
}
