package site

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/otgate/otgate/inspect/modbus"
)

// Access is who may reach what, when: the roles, users, grants and
// maintenance windows sections of the site file. The decision engine
// (package policy) compiles it; the site package only checks it.
type Access struct {
	Roles              []Role              `cbor:"1,keyasint,omitempty"`
	Users              []User              `cbor:"2,keyasint,omitempty"`
	MaintenanceWindows []MaintenanceWindow `cbor:"3,keyasint,omitempty"`
	Grants             []Grant             `cbor:"4,keyasint,omitempty"`
}

// Role is a named group of users that grants can name.
type Role struct {
	Name        string `cbor:"1,keyasint"`
	Description string `cbor:"2,keyasint,omitempty"`
}

// User is a person or machine account. Passwords and TOTP secrets live in
// the proxy's user store, never in the site file; the site file says who
// has which roles.
type User struct {
	Name        string   `cbor:"1,keyasint"`
	DisplayName string   `cbor:"2,keyasint,omitempty"`
	Roles       []string `cbor:"3,keyasint,omitempty"`
	Disabled    bool     `cbor:"4,keyasint,omitempty"`
	// SourceNetworks, when not empty, are the only networks the user may
	// connect from.
	SourceNetworks []netip.Prefix `cbor:"5,keyasint,omitempty"`
}

// MaintenanceWindow is a one-off period during which grants that name it
// apply, to the zones and assets it lists.
type MaintenanceWindow struct {
	Name        string    `cbor:"1,keyasint"`
	Description string    `cbor:"2,keyasint,omitempty"`
	Start       time.Time `cbor:"3,keyasint"`
	End         time.Time `cbor:"4,keyasint"`
	Zones       []string  `cbor:"5,keyasint,omitempty"`
	Assets      []string  `cbor:"6,keyasint,omitempty"`
}

// Covers reports whether the window's scope includes the asset.
func (w *MaintenanceWindow) Covers(a *Asset) bool {
	for _, z := range w.Zones {
		if z == a.Zone {
			return true
		}
	}
	for _, n := range w.Assets {
		if n == a.Name {
			return true
		}
	}
	return false
}

// Effect is what a grant does when it matches.
type Effect string

// Grant effects. An active deny grant wins over every allow grant.
const (
	EffectAllow Effect = "allow"
	EffectDeny  Effect = "deny"
)

// Grant lets (or, with EffectDeny, forbids) subjects reach targets over
// protocols at times.
//
// When a grant applies: on its Dates (none: every date), and within one
// of its Windows or one of its Maintenance windows (none of either: at
// any time of those dates). Days, hours and dates are read in TimeZone.
type Grant struct {
	Name        string `cbor:"1,keyasint"`
	Description string `cbor:"2,keyasint,omitempty"`
	Effect      Effect `cbor:"3,keyasint"`
	// Subjects: users named directly and roles.
	Users []string `cbor:"4,keyasint,omitempty"`
	Roles []string `cbor:"5,keyasint,omitempty"`
	// Targets: assets named directly and zones (every asset in them).
	Assets []string `cbor:"6,keyasint,omitempty"`
	Zones  []string `cbor:"7,keyasint,omitempty"`
	// Protocols; empty only on a deny grant, where it means every
	// protocol.
	Protocols []string `cbor:"8,keyasint,omitempty"`
	// TimeZone is an IANA zone name ("Europe/Berlin"); required when
	// Windows or Dates are set.
	TimeZone    string      `cbor:"9,keyasint,omitempty"`
	Windows     []Window    `cbor:"10,keyasint,omitempty"`
	Dates       []DateRange `cbor:"11,keyasint,omitempty"`
	Maintenance []string    `cbor:"12,keyasint,omitempty"`
	// MaxSession bounds one session under this grant (0: no bound of
	// its own).
	MaxSession time.Duration `cbor:"13,keyasint,omitempty"`
	// Modbus are the Modbus operations an allow grant permits; required
	// when the grant allows the modbus protocol, unless ModbusBlocks is
	// set.
	Modbus *modbus.Rules `cbor:"14,keyasint,omitempty"`
	// ModbusBlocks are per-unit rule blocks (the site file's modbus: as a
	// list): a request is judged by the block that lists its unit id. At
	// most one of Modbus and ModbusBlocks is set. A key of its own, not a
	// new meaning of 14: a policy applied before blocks existed decodes
	// as it did, and a build that predates them refuses (unknown field)
	// a policy that has them rather than ignore them.
	ModbusBlocks []modbus.Rules `cbor:"15,keyasint,omitempty"`
}

// HasModbusRules reports whether the grant has Modbus rules in either
// form.
func (g *Grant) HasModbusRules() bool { return g.Modbus != nil || len(g.ModbusBlocks) > 0 }

// Window is a weekly recurring period: on each of Days, each of Hours.
// A range crossing midnight ("22:00-06:00") belongs to the day it starts.
type Window struct {
	// Days is a bit set of time.Weekday (1<<time.Sunday ...); all days
	// when the file lists none.
	Days  uint8       `cbor:"1,keyasint"`
	Hours []TimeRange `cbor:"2,keyasint"`
}

// AllDays is the Days value of every day of the week.
const AllDays uint8 = 0x7f

// HasDay reports whether d is one of the window's days.
func (w Window) HasDay(d time.Weekday) bool { return w.Days&(1<<d) != 0 }

// DaysString renders the days as "mon-fri" or "mon,wed,sat".
func (w Window) DaysString() string {
	if w.Days == AllDays {
		return "every day"
	}
	var parts []string
	for _, d := range []time.Weekday{time.Monday, time.Tuesday, time.Wednesday, time.Thursday, time.Friday, time.Saturday, time.Sunday} {
		if w.HasDay(d) {
			parts = append(parts, dayNames[d])
		}
	}
	if w.Days == 0x3e {
		return "mon-fri"
	}
	return strings.Join(parts, ",")
}

func (w Window) String() string {
	hours := make([]string, len(w.Hours))
	for i, h := range w.Hours {
		hours[i] = h.String()
	}
	return w.DaysString() + " " + strings.Join(hours, ",")
}

// TimeRange is a local time range in minutes after midnight: Start in
// 0..1439, End in 1..1440 (1440 is "24:00"). End <= Start crosses
// midnight into the next day.
type TimeRange struct {
	Start int `cbor:"1,keyasint"`
	End   int `cbor:"2,keyasint"`
}

// CrossesMidnight reports whether the range ends on the next day.
func (r TimeRange) CrossesMidnight() bool { return r.End <= r.Start }

func (r TimeRange) String() string {
	return fmt.Sprintf("%02d:%02d-%02d:%02d", r.Start/60, r.Start%60, r.End/60, r.End%60)
}

// DateRange is an inclusive range of local dates (midnight at the start of
// From to midnight at the end of Until, in the grant's time zone).
type DateRange struct {
	From  Date `cbor:"1,keyasint"`
	Until Date `cbor:"2,keyasint"`
}

func (r DateRange) String() string { return r.From.String() + ".." + r.Until.String() }

// Date is a calendar date without a time zone.
type Date struct {
	Year  int        `cbor:"1,keyasint"`
	Month time.Month `cbor:"2,keyasint"`
	Day   int        `cbor:"3,keyasint"`
}

func (d Date) String() string { return fmt.Sprintf("%04d-%02d-%02d", d.Year, d.Month, d.Day) }

// Before reports whether d is an earlier date than e.
func (d Date) Before(e Date) bool {
	if d.Year != e.Year {
		return d.Year < e.Year
	}
	if d.Month != e.Month {
		return d.Month < e.Month
	}
	return d.Day < e.Day
}

// Reserved rule names: the decision engine names its own outcomes with
// these, so no grant may be called by them.
var ReservedRuleNames = []string{"default-deny", "unknown-user", "user-disabled", "source-network", "unknown-asset", "protocol-not-served", "no-time"}

// GrantByName returns the named grant.
func (a *Access) GrantByName(name string) (*Grant, bool) {
	for i := range a.Grants {
		if a.Grants[i].Name == name {
			return &a.Grants[i], true
		}
	}
	return nil, false
}

// UserByName returns the named user.
func (a *Access) UserByName(name string) (*User, bool) {
	for i := range a.Users {
		if a.Users[i].Name == name {
			return &a.Users[i], true
		}
	}
	return nil, false
}

// AssetByName returns the named asset.
func (s *Site) AssetByName(name string) (*Asset, bool) {
	for i := range s.Assets {
		if s.Assets[i].Name == name {
			return &s.Assets[i], true
		}
	}
	return nil, false
}
