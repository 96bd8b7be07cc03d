// Package alloc gives every asset one stable /32 overlay address: its
// proxy endpoint on the gate.
//
// Addresses come from one overlay prefix (100.64.0.0/16 by default). A
// pinned address is honoured as given; any other asset gets the lowest
// free address of its zone's pool. Pools are carved from the prefix
// (first fit, aligned, in zone-name order) or given explicitly, and once
// carved a pool is remembered so adding zones never moves it.
//
// An asset keeps its address for as long as it exists, across restarts
// and policy edits (even if it moves to another zone); only changing its
// pin moves it. A released address is quarantined, not reused by another
// asset, until the quarantine ends; the same asset coming back within the
// quarantine gets its old address again. The gate's own address, when
// the site file moves it, is quarantined the same way (a client still
// aiming at the old gate address must not reach an asset's endpoint);
// the gate moving back takes it back.
//
// Reserved, never allocated: the gate's own address, the first and last
// address of the prefix and of every pool, and every address whose last
// octet is 0 or 255 (broadcast-like; some stacks mishandle them).
//
// Every Apply is all or nothing: it computes the new table, persists it
// crash-safely (deterministic CBOR, temp file, fsync, rename, fsync dir)
// in two copies, the state file and its mirror, and only then replaces
// the table in memory. On any error nothing changes in memory. A copy
// lost or damaged on its own is restored from the other at Open.
package alloc

import (
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Defaults.
var DefaultPrefix = netip.MustParsePrefix("100.64.0.0/16")

// Default settings.
const (
	DefaultPoolSize   = 256
	DefaultQuarantine = 7 * 24 * time.Hour
	// MaxQuarantine bounds the quarantine (as the site file's days do):
	// the end of a quarantine is stored in Unix nanoseconds, which end in
	// 2262, so a longer one would wrap to the past and end at the next
	// reload.
	MaxQuarantine = 100 * 365 * 24 * time.Hour
)

// Errors, wrapped with the details.
var (
	ErrExhausted     = errors.New("pool exhausted")
	ErrNoRoom        = errors.New("no room for pool")
	ErrConflict      = errors.New("address conflict")
	ErrBadRequest    = errors.New("bad allocation request")
	ErrPrefixChanged = errors.New("overlay prefix changed")
	ErrCorruptState  = errors.New("corrupt allocator state")
)

// Config is the address plan (from the site file's overlay section).
type Config struct {
	Prefix     netip.Prefix
	Gate       netip.Addr
	Quarantine time.Duration
	// PoolSize is the default pool size in addresses (a power of two).
	PoolSize int
	// Pools overrides the pool of some zones.
	Pools map[string]PoolSpec
}

// PoolSpec is one zone's pool: a size (a power of two) or a fixed prefix.
type PoolSpec struct {
	Size   int
	Prefix netip.Prefix
}

// Request asks for one asset's address.
type Request struct {
	Asset string
	Zone  string
	// Pinned is the address the site file pins, or the zero Addr.
	Pinned netip.Addr
}

// Entry is one row of the allocation table.
type Entry struct {
	Asset  string     `cbor:"1,keyasint"`
	Zone   string     `cbor:"2,keyasint"`
	Addr   netip.Addr `cbor:"3,keyasint"`
	Pinned bool       `cbor:"4,keyasint"`
}

// Held is a quarantined address.
type Held struct {
	Addr  netip.Addr `cbor:"1,keyasint"`
	Asset string     `cbor:"2,keyasint"` // who released it ("": the gate, GateHeld)
	Zone  string     `cbor:"3,keyasint"`
	Until time.Time  `cbor:"4,keyasint"`
}

// GateHeld reports whether the address is the gate's own former overlay
// address (the site file moved the gate), quarantined like a released
// endpoint. Its Asset is empty: no asset can have that name, so no asset
// ever takes it back as its own.
func (h Held) GateHeld() bool { return h.Asset == "" }

// ReleasedBy names who released the address, for messages.
func (h Held) ReleasedBy() string {
	if h.GateHeld() {
		return "the gate (its former overlay address)"
	}
	return fmt.Sprintf("asset %q", h.Asset)
}

// Pool is one zone's carved pool.
type Pool struct {
	Zone   string       `cbor:"1,keyasint"`
	Prefix netip.Prefix `cbor:"2,keyasint"`
}

// Diff says what an Apply changed.
type Diff struct {
	Added    []Entry // new assets (or restored from quarantine)
	Released []Held  // assets gone (or the gate moved), addresses quarantined
	Moved    []Entry // assets whose pin changed (new address)
	Expired  []Held  // quarantine entries that ended
}

// Empty reports whether nothing changed.
func (d Diff) Empty() bool {
	return len(d.Added)+len(d.Released)+len(d.Moved)+len(d.Expired) == 0
}

func (c *Config) withDefaults() Config {
	out := *c
	if !out.Prefix.IsValid() {
		out.Prefix = DefaultPrefix
	}
	out.Prefix = out.Prefix.Masked()
	if !out.Gate.IsValid() {
		out.Gate = out.Prefix.Addr().Next()
	}
	if out.PoolSize == 0 {
		out.PoolSize = DefaultPoolSize
	}
	if out.Quarantine == 0 {
		out.Quarantine = DefaultQuarantine
	}
	return out
}
