package site

import (
	"math/bits"
	"sort"

	"gopkg.in/yaml.v3"
)

func decodeOverlay(d *decoder, n *yaml.Node, path string, s *Site) {
	f := d.fields(n, path, "prefix", "gate", "quarantine", "pool_size", "pools")
	o := &s.Overlay
	if v, ok := f["prefix"]; ok {
		o.Prefix, _ = d.prefix4(v, join(path, "prefix"))
	}
	if v, ok := f["gate"]; ok {
		o.Gate, _ = d.ipv4(v, join(path, "gate"))
	}
	if v, ok := f["quarantine"]; ok {
		o.Quarantine, _ = d.duration(v, join(path, "quarantine"))
	}
	if v, ok := f["pool_size"]; ok {
		o.PoolSize, _ = d.integer(v, join(path, "pool_size"), 4, 1<<24)
	}
	if v, ok := f["pools"]; ok {
		pp := join(path, "pools")
		// pools is a mapping zone -> {size | prefix}; zone names are keys,
		// so fields cannot check them against a fixed list.
		if !d.usable(v, pp) {
			return
		}
		if v.Kind != yaml.MappingNode {
			d.nodeErrorf(v, pp, "want a mapping of zone name to {size or prefix}, got %s", kindName(v))
		} else {
			seen := map[string]bool{}
			for i := 0; i+1 < len(v.Content); i += 2 {
				k, pv := v.Content[i], v.Content[i+1]
				zp := join(pp, k.Value)
				d.lines[zp] = k.Line
				zone, ok := d.name(k, zp)
				if !ok {
					continue
				}
				if seen[zone] {
					d.nodeErrorf(k, zp, "duplicate pool for zone %q", zone)
					continue
				}
				seen[zone] = true
				pool := Pool{Zone: zone}
				f := d.fields(pv, zp, "size", "prefix")
				if f == nil {
					continue
				}
				if sv, ok := f["size"]; ok {
					pool.Size, _ = d.integer(sv, join(zp, "size"), 4, 1<<24)
				}
				if prv, ok := f["prefix"]; ok {
					pool.Prefix, _ = d.prefix4(prv, join(zp, "prefix"))
				}
				if len(f) != 1 {
					d.nodeErrorf(pv, zp, "want exactly one of size or prefix")
					continue
				}
				o.Pools = append(o.Pools, pool)
			}
		}
	}
}

// applyOverlayDefaults fills unset overlay settings.
func applyOverlayDefaults(s *Site) {
	o := &s.Overlay
	if !o.Prefix.IsValid() {
		o.Prefix = DefaultOverlayPrefix
	}
	if !o.Gate.IsValid() && o.Prefix.Bits() < 31 {
		o.Gate = o.Prefix.Addr().Next()
	}
	if o.Quarantine == 0 {
		o.Quarantine = DefaultQuarantine
	}
	if o.PoolSize == 0 {
		o.PoolSize = DefaultPoolSize
	}
	if s.Limits.MaxExceptionLifetime == 0 {
		s.Limits.MaxExceptionLifetime = DefaultMaxExceptionLifetime
	}
	sort.Slice(o.Pools, func(i, j int) bool { return o.Pools[i].Zone < o.Pools[j].Zone })
}

func validateOverlay(v *validator, s *Site) {
	o := &s.Overlay
	if v.d.failed["overlay.prefix"] {
		return // reported; every check below depends on it
	}
	if o.Prefix.Bits() > 28 || o.Prefix.Bits() < 8 {
		v.errorf("overlay.prefix", "overlay prefix %s: want a length between /8 and /28", o.Prefix)
	}
	if !o.Prefix.Contains(o.Gate) {
		v.errorf("overlay.gate", "gate address %s is outside the overlay prefix %s", o.Gate, o.Prefix)
	} else if IsNetworkOrBroadcast(o.Gate, o.Prefix) {
		v.errorf("overlay.gate", "gate address %s is the network or broadcast address of the overlay prefix %s", o.Gate, o.Prefix)
	}
	for i, z := range s.Zones {
		if z.Subnet.IsValid() && z.Subnet.Overlaps(o.Prefix) {
			v.errorf("overlay.prefix", "overlay prefix %s overlaps zone %q subnet %s (at %s)", o.Prefix, z.Name, z.Subnet, index("zones", i))
		}
		if z.GateAddress.IsValid() && o.Prefix.Contains(z.GateAddress) {
			v.errorf(join(index("zones", i), "gate_address"), "gate address %s is an overlay address (overlay prefix %s); the gate's OT-side address must be an underlay address", z.GateAddress, o.Prefix)
		}
	}
	checkSize := func(p string, size int) {
		if bits.OnesCount(uint(size)) != 1 {
			v.errorf(p, "pool size %d is not a power of two", size)
		} else if size > 1<<(32-o.Prefix.Bits()) {
			v.errorf(p, "pool size %d is larger than the overlay prefix %s", size, o.Prefix)
		}
	}
	if o.PoolSize != 0 {
		checkSize("overlay.pool_size", o.PoolSize)
	}
	for i, pool := range o.Pools {
		p := join("overlay.pools", pool.Zone)
		if v.zones[pool.Zone] == nil {
			v.errorf(p, "unknown zone %q (known: %s)", pool.Zone, v.knownZones())
		}
		if pool.Size != 0 {
			checkSize(join(p, "size"), pool.Size)
		}
		if pool.Prefix.IsValid() {
			pp := join(p, "prefix")
			if !o.Prefix.Contains(pool.Prefix.Addr()) || pool.Prefix.Bits() < o.Prefix.Bits() {
				v.errorf(pp, "pool %s is outside the overlay prefix %s", pool.Prefix, o.Prefix)
			} else if pool.Prefix.Bits() > 30 {
				v.errorf(pp, "pool %s is too small (want at most /30)", pool.Prefix)
			}
			for _, other := range o.Pools[:i] {
				if other.Prefix.IsValid() && other.Prefix.Overlaps(pool.Prefix) {
					v.errorf(pp, "pool %s overlaps zone %q pool %s", pool.Prefix, other.Zone, other.Prefix)
				}
			}
		}
	}
}
