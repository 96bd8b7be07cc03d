package alloc

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"

	"github.com/fxamacker/cbor/v2"
)

// stateMagic opens every state file.
const stateMagic = "otgate-overlay-alloc"

// stateVersion is the on-disk format version.
const stateVersion = 1

// envelope carries the encoded table with its checksum, so a damaged
// file is an error (ErrCorruptState), never a silently different table.
type envelope struct {
	Magic  string   `cbor:"1,keyasint"`
	Body   []byte   `cbor:"2,keyasint"`
	SHA256 [32]byte `cbor:"3,keyasint"`
}

// diskTable is the on-disk form of a table. Entries are stored as
// columns (names, zone indexes, packed addresses) so that a table of
// tens of thousands of assets loads in milliseconds.
type diskTable struct {
	Version int          `cbor:"1,keyasint"`
	Prefix  netip.Prefix `cbor:"2,keyasint"`
	Gate    netip.Addr   `cbor:"3,keyasint"`
	Pools   []Pool       `cbor:"4,keyasint"`
	Zones   []string     `cbor:"5,keyasint"` // zone names, sorted
	Assets  []string     `cbor:"6,keyasint"` // sorted
	ZoneOf  []uint32     `cbor:"7,keyasint"` // index into Zones, per asset
	Addrs   []byte       `cbor:"8,keyasint"` // 4 bytes per asset
	Pinned  []uint32     `cbor:"9,keyasint"` // indexes of pinned assets
	Held    []diskHeld   `cbor:"10,keyasint"`
}

type diskHeld struct {
	Addr  netip.Addr `cbor:"1,keyasint"`
	Asset string     `cbor:"2,keyasint"`
	Zone  string     `cbor:"3,keyasint"`
	Until int64      `cbor:"4,keyasint"` // unix nanoseconds
}

var (
	encMode = func() cbor.EncMode {
		m, err := cbor.CoreDetEncOptions().EncMode()
		if err != nil {
			panic(err)
		}
		return m
	}()
	decMode = func() cbor.DecMode {
		m, err := cbor.DecOptions{
			ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
			DupMapKey:         cbor.DupMapKeyEnforcedAPF,
			MaxArrayElements:  1 << 27,
		}.DecMode()
		if err != nil {
			panic(err)
		}
		return m
	}()
)

func encodeTable(t *table) ([]byte, error) {
	d := diskTable{Version: stateVersion, Prefix: t.prefix, Gate: t.gate, Pools: t.pools}
	zoneIdx := map[string]uint32{}
	for _, e := range t.entries {
		zoneIdx[e.Zone] = 0
	}
	for z := range zoneIdx {
		d.Zones = append(d.Zones, z)
	}
	sortStrings(d.Zones)
	for i, z := range d.Zones {
		zoneIdx[z] = uint32(i)
	}
	d.Assets = make([]string, len(t.entries))
	d.ZoneOf = make([]uint32, len(t.entries))
	d.Addrs = make([]byte, 4*len(t.entries))
	for i, e := range t.entries {
		d.Assets[i] = e.Asset
		d.ZoneOf[i] = zoneIdx[e.Zone]
		binary.BigEndian.PutUint32(d.Addrs[4*i:], u32(e.Addr))
		if e.Pinned {
			d.Pinned = append(d.Pinned, uint32(i))
		}
	}
	for _, h := range t.held {
		d.Held = append(d.Held, diskHeld{Addr: h.Addr, Asset: h.Asset, Zone: h.Zone, Until: h.Until.UnixNano()})
	}
	body, err := encMode.Marshal(d)
	if err != nil {
		return nil, err
	}
	return encMode.Marshal(envelope{Magic: stateMagic, Body: body, SHA256: sha256.Sum256(body)})
}

func decodeTable(b []byte) (*table, error) {
	var env envelope
	if err := decMode.Unmarshal(b, &env); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorruptState, err)
	}
	if env.Magic != stateMagic {
		return nil, fmt.Errorf("%w: not an allocator state file (magic %q)", ErrCorruptState, env.Magic)
	}
	if sum := sha256.Sum256(env.Body); !bytes.Equal(sum[:], env.SHA256[:]) {
		return nil, fmt.Errorf("%w: checksum mismatch", ErrCorruptState)
	}
	var d diskTable
	if err := decMode.Unmarshal(env.Body, &d); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorruptState, err)
	}
	if d.Version != stateVersion {
		return nil, fmt.Errorf("%w: format version %d (this build reads %d)", ErrCorruptState, d.Version, stateVersion)
	}
	n := len(d.Assets)
	if len(d.ZoneOf) != n || len(d.Addrs) != 4*n {
		return nil, fmt.Errorf("%w: column lengths differ (%d assets, %d zones, %d address bytes)", ErrCorruptState, n, len(d.ZoneOf), len(d.Addrs))
	}
	t := &table{prefix: d.Prefix, gate: d.Gate, pools: d.Pools, entries: make([]Entry, n)}
	for i := range d.Assets {
		z := d.ZoneOf[i]
		if int(z) >= len(d.Zones) {
			return nil, fmt.Errorf("%w: asset %q: zone index %d out of range", ErrCorruptState, d.Assets[i], z)
		}
		t.entries[i] = Entry{Asset: d.Assets[i], Zone: d.Zones[z], Addr: fromU32(binary.BigEndian.Uint32(d.Addrs[4*i:]))}
	}
	for _, p := range d.Pinned {
		if int(p) >= n {
			return nil, fmt.Errorf("%w: pinned index %d out of range", ErrCorruptState, p)
		}
		t.entries[p].Pinned = true
	}
	for _, h := range d.Held {
		t.held = append(t.held, Held{Addr: h.Addr, Asset: h.Asset, Zone: h.Zone, Until: time.Unix(0, h.Until).UTC()})
	}
	if err := t.check(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorruptState, err)
	}
	return t, nil
}

// check verifies a loaded table's invariants: addresses inside the
// prefix, no address twice, names sorted and unique.
func (t *table) check() error {
	if len(t.entries) == 0 && len(t.held) == 0 && !t.prefix.IsValid() {
		return nil
	}
	if !t.prefix.Addr().Is4() || !t.prefix.Contains(t.gate) {
		return fmt.Errorf("bad prefix %s or gate %s", t.prefix, t.gate)
	}
	used := newUsedSet(t.prefix)
	used.set(u32(t.gate))
	mark := func(what string, a netip.Addr) error {
		if !a.Is4() || !t.prefix.Contains(a) {
			return fmt.Errorf("%s: address %s outside the prefix %s", what, a, t.prefix)
		}
		if used.has(u32(a)) {
			return fmt.Errorf("%s: address %s used twice", what, a)
		}
		used.set(u32(a))
		return nil
	}
	for i, e := range t.entries {
		if i > 0 && t.entries[i-1].Asset >= e.Asset {
			return fmt.Errorf("assets not sorted or duplicated at %q", e.Asset)
		}
		if err := mark("asset "+e.Asset, e.Addr); err != nil {
			return err
		}
	}
	for _, h := range t.held {
		if err := mark("quarantined", h.Addr); err != nil {
			return err
		}
	}
	return nil
}
