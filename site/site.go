// Package site loads, validates and compiles the human-written site file:
// the YAML document that declares a plant's zones, assets, exceptions,
// overlay settings, the uplink and limits.
//
// The file is decoded node by node (gopkg.in/yaml.v3 yaml.Node) so that
// every problem is reported with the file, the line and the field path,
// e.g. `site.yaml:42: assets[3].zone: unknown zone "cell-9" (known:
// cell-1, cell-2)`. All problems are collected, not just the first, and a
// file with any problem yields no Site at all: nothing is applied.
//
// The file is a set of top-level sections, each with one decoder and one
// validator (see sections.go). A later concern (roles, users, grants) adds
// a field to Site and a row to the section table; nothing else changes.
//
// A valid Site compiles to a deterministic CBOR document (Compile) that is
// stored atomically (Store) and read back by the services (LoadApplied).
package site

import (
	"fmt"
	"net/netip"
	"time"
)

// Site is a validated site file.
type Site struct {
	Name       string      `cbor:"1,keyasint"`
	Zones      []Zone      `cbor:"2,keyasint"`
	Assets     []Asset     `cbor:"3,keyasint"`
	Exceptions []Exception `cbor:"4,keyasint"`
	Overlay    Overlay     `cbor:"5,keyasint"`
	Limits     Limits      `cbor:"6,keyasint"`
	// Access: roles, users, maintenance windows and grants (access.go).
	Access Access `cbor:"7,keyasint,omitempty"`
	// Uplink is the optional uplink section (uplink.go), nil for DHCP
	// without NTP servers (no section, or mode dhcp alone): omitted then,
	// so such a site compiles to the same document as before the section
	// existed. A DHCP uplink with an ntp list keeps the section (Mode
	// empty). Read it with UplinkSettings.
	Uplink *Uplink `cbor:"8,keyasint,omitempty"`
}

// UplinkSettings is the site's uplink: the section's settings, or the
// zero Uplink (DHCP, no NTP servers named).
func (s *Site) UplinkSettings() Uplink {
	if s.Uplink == nil {
		return Uplink{}
	}
	return *s.Uplink
}

// Mode is how a zone's segment is enforced.
type Mode string

// Zone modes.
const (
	// ModeMonitor accepts what enforce would drop, and counts and logs it.
	ModeMonitor Mode = "monitor"
	// ModeEnforce drops everything not allowed.
	ModeEnforce Mode = "enforce"
)

// Zone is one OT network segment behind the gate. In the site file:
//
//	zones:
//	  - name: cell-1
//	    owner: ot-team@plant.example
//	    mode: enforce
//	    interface: eth1
//	    vlan: 101                # optional
//	    subnet: 10.10.1.0/24
//	    gate_address: 10.10.1.1  # required: the gate's own address here
type Zone struct {
	Name  string `cbor:"1,keyasint"`
	Owner string `cbor:"2,keyasint"`
	Mode  Mode   `cbor:"3,keyasint"`
	// Interface is the OT-side interface; with VLAN set it is the parent
	// of an 802.1Q sub-interface carrying VLAN.
	Interface string       `cbor:"4,keyasint"`
	VLAN      int          `cbor:"5,keyasint,omitempty"`
	Subnet    netip.Prefix `cbor:"6,keyasint"`
	// GateAddress is the gate's own address in the zone: netconf puts it,
	// with the subnet's prefix length, on the zone's interface (the VLAN
	// sub-interface for a VLAN zone). The proxy reaches the zone's assets
	// from it and they answer to it (on-link; an asset that routes
	// through a gateway of its own needs a route back to it). Required in
	// the site file; zero only in a policy compiled before the field
	// existed.
	GateAddress netip.Addr `cbor:"7,keyasint,omitempty"`
}

// GatePrefix is the gate's address in the zone with the subnet's length
// (10.77.0.1/24), or the zero Prefix when the zone has none.
func (z Zone) GatePrefix() netip.Prefix {
	if !z.GateAddress.IsValid() || !z.Subnet.IsValid() {
		return netip.Prefix{}
	}
	return netip.PrefixFrom(z.GateAddress, z.Subnet.Bits())
}

// IfName is the interface the zone lives on: the interface, or
// "interface.vlan" for a VLAN zone (eth1.100).
func (z Zone) IfName() string {
	if z.VLAN != 0 {
		return fmt.Sprintf("%s.%d", z.Interface, z.VLAN)
	}
	return z.Interface
}

// Asset is one OT device (PLC, HMI, RTU, ...).
type Asset struct {
	Name string `cbor:"1,keyasint"`
	Zone string `cbor:"2,keyasint"`
	// Address is the asset's own (underlay) IPv4 address.
	Address netip.Addr `cbor:"3,keyasint"`
	// MAC in lower-case colon form, or empty.
	MAC      string    `cbor:"4,keyasint,omitempty"`
	Services []Service `cbor:"5,keyasint"`
	// Overlay is a pinned overlay address; the zero Addr means "allocate".
	Overlay netip.Addr `cbor:"6,keyasint,omitempty"`
}

// Service is one protocol an asset speaks, on one TCP port.
type Service struct {
	Protocol string `cbor:"1,keyasint"`
	Port     uint16 `cbor:"2,keyasint"`
}

// Exception is an explicit asset-to-asset flow through the gate.
type Exception struct {
	From          Endpoint  `cbor:"1,keyasint"`
	To            Endpoint  `cbor:"2,keyasint"`
	Protocol      string    `cbor:"3,keyasint"`
	Port          uint16    `cbor:"4,keyasint"`
	Owner         string    `cbor:"5,keyasint"`
	Justification string    `cbor:"6,keyasint"`
	Ticket        string    `cbor:"7,keyasint,omitempty"`
	Expires       time.Time `cbor:"8,keyasint"`
}

// Endpoint is one side of an exception: a declared asset or an address.
// After validation Address is always set (an asset's underlay address).
type Endpoint struct {
	Asset   string     `cbor:"1,keyasint,omitempty"`
	Address netip.Addr `cbor:"2,keyasint"`
}

func (e Endpoint) String() string {
	if e.Asset != "" {
		return e.Asset
	}
	return e.Address.String()
}

// Overlay holds the overlay address plan.
type Overlay struct {
	Prefix netip.Prefix `cbor:"1,keyasint"`
	// Gate is the gate's own overlay address (reserved for assets).
	Gate netip.Addr `cbor:"2,keyasint"`
	// Quarantine is how long a released address is not reused.
	Quarantine time.Duration `cbor:"3,keyasint"`
	// PoolSize is the default number of addresses of a zone's pool.
	PoolSize int `cbor:"4,keyasint"`
	// Pools overrides the pool of some zones, sorted by zone.
	Pools []Pool `cbor:"5,keyasint"`
}

// Pool overrides one zone's overlay pool: a size (a power of two) or a
// fixed prefix inside the overlay prefix.
type Pool struct {
	Zone   string       `cbor:"1,keyasint"`
	Size   int          `cbor:"2,keyasint,omitempty"`
	Prefix netip.Prefix `cbor:"3,keyasint,omitempty"`
}

// Limits bound what the file may ask for.
type Limits struct {
	MaxExceptionLifetime time.Duration `cbor:"1,keyasint"`
}

// Defaults.
var (
	DefaultOverlayPrefix = netip.MustParsePrefix("100.64.0.0/16")
)

// Default values of optional settings.
const (
	DefaultQuarantine           = 7 * 24 * time.Hour
	DefaultPoolSize             = 256
	DefaultMaxExceptionLifetime = 90 * 24 * time.Hour
)

// ZoneByName returns the named zone.
func (s *Site) ZoneByName(name string) (Zone, bool) {
	for _, z := range s.Zones {
		if z.Name == name {
			return z, true
		}
	}
	return Zone{}, false
}
