package site

import (
	"net/netip"
	"time"

	"gopkg.in/yaml.v3"
)

// section is one top-level key of the site file: how to decode it into a
// Site and how to validate it against the rest. Validators run in table
// order after every section is decoded, so a later section may rely on
// the lookups of an earlier one (assets on zones, exceptions on assets).
type section struct {
	key      string
	required bool
	decode   func(d *decoder, n *yaml.Node, path string, s *Site)
	validate func(v *validator, s *Site)
}

// sections is the site file's schema. To add a concern, add a Site
// field and a row here.
var sections = []section{
	{key: "site", required: true, decode: decodeSiteName},
	{key: "limits", decode: decodeLimits},
	{key: "zones", required: true, decode: decodeZones, validate: validateZones},
	{key: "overlay", decode: decodeOverlay, validate: validateOverlay},
	// The uplink (uplink.go): optional, DHCP without it.
	{key: "uplink", decode: decodeUplink, validate: validateUplink},
	{key: "assets", decode: decodeAssets, validate: validateAssets},
	{key: "exceptions", decode: decodeExceptions, validate: validateExceptions},
	// Access (access.go): roles, users, maintenance windows, grants.
	{key: "roles", decode: decodeRoles, validate: validateRoles},
	{key: "users", decode: decodeUsers, validate: validateUsers},
	{key: "maintenance_windows", decode: decodeMaintenanceWindows, validate: validateMaintenanceWindows},
	{key: "grants", decode: decodeGrants, validate: validateGrants},
}

func sectionKeys() []string {
	keys := make([]string, len(sections))
	for i, s := range sections {
		keys[i] = s.key
	}
	return keys
}

// validator checks cross-field rules, reporting at the recorded line of
// each field path.
type validator struct {
	d   *decoder
	now time.Time

	zones  map[string]*Zone
	assets map[string]*Asset
	// gates maps each zone's gate address to the zone's index.
	gates map[netip.Addr]int
}

func (v *validator) errorf(path, format string, args ...any) {
	v.d.errorf(v.d.lines[path], path, format, args...)
}

func decodeSiteName(d *decoder, n *yaml.Node, path string, s *Site) {
	s.Name, _ = d.name(n, path)
}

func decodeLimits(d *decoder, n *yaml.Node, path string, s *Site) {
	f := d.fields(n, path, "max_exception_lifetime")
	if v, ok := f["max_exception_lifetime"]; ok {
		if dur, ok := d.duration(v, join(path, "max_exception_lifetime")); ok {
			s.Limits.MaxExceptionLifetime = dur
		}
	}
}
