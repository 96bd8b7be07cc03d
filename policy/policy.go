package policy

import (
	"fmt"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"

	"github.com/otgate/otgate/inspect/modbus"
	"github.com/otgate/otgate/site"
)

// Horizon is how far ahead Decide looks for the end of a decision.
const Horizon = 400 * 24 * time.Hour

// Rule names of decisions no grant made.
const (
	RuleDefaultDeny       = "default-deny"
	RuleUnknownUser       = "unknown-user"
	RuleUserDisabled      = "user-disabled"
	RuleSourceNetwork     = "source-network"
	RuleUnknownAsset      = "unknown-asset"
	RuleProtocolNotServed = "protocol-not-served"
	RuleNoTime            = "no-time"
)

// Policy is a compiled site file's access rules. It is immutable and safe
// for concurrent use.
type Policy struct {
	siteName string
	users    map[string]*user
	// userNames in file order.
	userNames []string
	assets    map[string]*site.Asset
	grants    []*grant
	// byAsset holds, per asset, the grants targeting it, in file order.
	byAsset map[string][]*grant
}

type user struct {
	site.User
	roles map[string]bool
}

// grant is one compiled site grant.
type grant struct {
	site.Grant
	index   int
	users   map[string]bool
	roles   map[string]bool
	assets  map[string]bool
	zones   map[string]bool
	protos  map[string]bool // nil: every protocol (deny grants only)
	loc     *time.Location
	maint   []*site.MaintenanceWindow
	modbus  *modbus.Policy
	windows string // human form of the schedule, for reasons
}

func setOf(names []string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}

// Compile builds the decision engine for a validated site. It re-checks
// what it relies on (time zones, Modbus rules, references) and fails
// rather than guess.
func Compile(s *site.Site) (*Policy, error) {
	p := &Policy{
		siteName: s.Name,
		users:    map[string]*user{},
		assets:   map[string]*site.Asset{},
		byAsset:  map[string][]*grant{},
	}
	for i := range s.Assets {
		a := s.Assets[i]
		if p.assets[a.Name] != nil {
			// The later definition would replace the earlier for Decide
			// while grants on either one's zone still reached it.
			return nil, fmt.Errorf("policy: asset %q defined twice", a.Name)
		}
		p.assets[a.Name] = &a
	}
	roles := map[string]bool{}
	for _, r := range s.Access.Roles {
		roles[r.Name] = true
	}
	for _, u := range s.Access.Users {
		if p.users[u.Name] != nil {
			// The later definition would silently replace the earlier
			// (a disabled user enabled again).
			return nil, fmt.Errorf("policy: user %q defined twice", u.Name)
		}
		for _, r := range u.Roles {
			if !roles[r] {
				return nil, fmt.Errorf("policy: user %q: unknown role %q", u.Name, r)
			}
		}
		u.Roles = slices.Clone(u.Roles)
		u.SourceNetworks = slices.Clone(u.SourceNetworks)
		p.users[u.Name] = &user{User: u, roles: setOf(u.Roles)}
		p.userNames = append(p.userNames, u.Name)
	}
	windows := map[string]*site.MaintenanceWindow{}
	for i := range s.Access.MaintenanceWindows {
		w := s.Access.MaintenanceWindows[i]
		switch {
		case windows[w.Name] != nil:
			// The later definition would replace the earlier (a window
			// a month longer than the one validated).
			return nil, fmt.Errorf("policy: maintenance window %q defined twice", w.Name)
		case w.Start.IsZero():
			// It would apply since the beginning of time.
			return nil, fmt.Errorf("policy: maintenance window %q: no start", w.Name)
		case w.End.IsZero():
			return nil, fmt.Errorf("policy: maintenance window %q: no end", w.Name)
		case !w.End.After(w.Start):
			return nil, fmt.Errorf("policy: maintenance window %q: end %s is not after start %s", w.Name, w.End.Format(time.RFC3339), w.Start.Format(time.RFC3339))
		}
		windows[w.Name] = &w
	}
	names := map[string]bool{}
	for i, sg := range s.Access.Grants {
		if names[sg.Name] {
			return nil, fmt.Errorf("policy: grant %q defined twice", sg.Name)
		}
		names[sg.Name] = true
		g, err := compileGrant(i, sg, windows)
		if err != nil {
			return nil, err
		}
		p.grants = append(p.grants, g)
		for _, a := range s.Assets {
			if g.assets[a.Name] || g.zones[a.Zone] {
				p.byAsset[a.Name] = append(p.byAsset[a.Name], g)
			}
		}
	}
	return p, nil
}

func compileGrant(i int, sg site.Grant, windows map[string]*site.MaintenanceWindow) (*grant, error) {
	g := &grant{
		Grant:  sg,
		index:  i,
		users:  setOf(sg.Users),
		roles:  setOf(sg.Roles),
		assets: setOf(sg.Assets),
		zones:  setOf(sg.Zones),
		loc:    time.UTC,
	}
	if len(sg.Protocols) > 0 {
		g.protos = setOf(sg.Protocols)
	} else if sg.Effect != site.EffectDeny {
		return nil, fmt.Errorf("policy: grant %q allows no protocol", sg.Name)
	}
	if sg.Effect != site.EffectAllow && sg.Effect != site.EffectDeny {
		return nil, fmt.Errorf("policy: grant %q: unknown effect %q", sg.Name, sg.Effect)
	}
	if err := checkSchedule(&sg); err != nil {
		return nil, fmt.Errorf("policy: grant %q: %w", sg.Name, err)
	}
	if sg.TimeZone == "Local" {
		// time.LoadLocation gives the machine's zone (UTC on the
		// appliance): the grant's hours would silently move.
		return nil, fmt.Errorf("policy: grant %q: time zone %q depends on the machine; the site must name an IANA zone", sg.Name, sg.TimeZone)
	}
	if sg.TimeZone != "" {
		loc, err := time.LoadLocation(sg.TimeZone)
		if err != nil {
			return nil, fmt.Errorf("policy: grant %q: time zone %q: %w (does the binary embed time/tzdata?)", sg.Name, sg.TimeZone, err)
		}
		g.loc = loc
	} else if len(sg.Windows) > 0 || len(sg.Dates) > 0 {
		return nil, fmt.Errorf("policy: grant %q has windows or dates but no time zone", sg.Name)
	}
	for _, name := range sg.Maintenance {
		w := windows[name]
		if w == nil {
			return nil, fmt.Errorf("policy: grant %q: unknown maintenance window %q", sg.Name, name)
		}
		g.maint = append(g.maint, w)
	}
	switch {
	case sg.Modbus != nil && len(sg.ModbusBlocks) > 0:
		// Which one would judge is a guess; the loader never gives both.
		return nil, fmt.Errorf("policy: grant %q has both single modbus rules and per-unit blocks", sg.Name)
	case sg.Modbus != nil:
		mp, err := sg.Modbus.Compile()
		if err != nil {
			return nil, fmt.Errorf("policy: grant %q: %w", sg.Name, err)
		}
		g.modbus = mp
	case len(sg.ModbusBlocks) > 0:
		mp, err := modbus.CompileBlocks(sg.Name, sg.ModbusBlocks)
		if err != nil {
			return nil, fmt.Errorf("policy: grant %q: %w", sg.Name, err)
		}
		g.modbus = mp
	case sg.Effect == site.EffectAllow && g.protos["modbus"]:
		return nil, fmt.Errorf("policy: grant %q allows modbus without modbus rules", sg.Name)
	}
	g.windows = describeSchedule(&g.Grant)
	return g, nil
}

// checkSchedule re-checks the ranges the loader enforces and the
// schedule relies on: out of them, time.Date would normalise a window or
// a date into another (an end of 100000 minutes is ten weeks later,
// February 30 is March 2), and a negative max_session would bound
// nothing.
func checkSchedule(g *site.Grant) error {
	for i, w := range g.Windows {
		if w.Days == 0 || w.Days&^site.AllDays != 0 {
			return fmt.Errorf("windows[%d].days: bad day set %#x", i, w.Days)
		}
		if len(w.Hours) == 0 {
			return fmt.Errorf("windows[%d].hours: no time range", i)
		}
		for j, r := range w.Hours {
			if r.Start < 0 || r.Start >= 24*60 || r.End < 1 || r.End > 24*60 || r.Start == r.End {
				return fmt.Errorf("windows[%d].hours[%d]: bad time range (start %d, end %d minutes; want 0..1439 and 1..1440, not equal)", i, j, r.Start, r.End)
			}
		}
	}
	for i, r := range g.Dates {
		for _, d := range []struct {
			field string
			date  site.Date
		}{{"from", r.From}, {"until", r.Until}} {
			y, m, dd := time.Date(d.date.Year, d.date.Month, d.date.Day, 12, 0, 0, 0, time.UTC).Date()
			if y != d.date.Year || m != d.date.Month || dd != d.date.Day {
				return fmt.Errorf("dates[%d].%s: no such date %s", i, d.field, d.date)
			}
		}
		if r.Until.Before(r.From) {
			return fmt.Errorf("dates[%d]: until %s is before from %s", i, r.Until, r.From)
		}
	}
	if g.MaxSession < 0 {
		return fmt.Errorf("max_session: negative (%s)", g.MaxSession)
	}
	return nil
}

// SiteName is the name of the site the policy was compiled from.
func (p *Policy) SiteName() string { return p.siteName }

// Holder holds the current policy for concurrent readers; a reload swaps
// it atomically.
type Holder struct{ p atomic.Pointer[Policy] }

// Load returns the current policy (nil before the first Store).
func (h *Holder) Load() *Policy { return h.p.Load() }

// Swap installs p and returns the previous policy.
func (h *Holder) Swap(p *Policy) *Policy { return h.p.Swap(p) }

// Request is one access question. The user's roles come from the site
// file, never from the request.
type Request struct {
	User     string
	Asset    string
	Protocol string
	// Source is the client's address as the gate sees it.
	Source netip.Addr
	Time   time.Time
}

// Decision is Decide's answer.
type Decision struct {
	Allow bool
	// Rule names what made the decision: the allowing or denying grant, or
	// one of the Rule* names.
	Rule string
	// Reason says why, for people (logs, the client, explain).
	Reason string
	// Until is when this decision stops holding (see the package doc);
	// zero: not within Horizon.
	Until time.Time
	// MaxSession is the allowing grant's session bound (0: none).
	MaxSession time.Duration
	// Modbus is the allowing grant's compiled Modbus rules, single or
	// per-unit blocks (nil when the protocol is not modbus or the
	// decision is a deny).
	Modbus *modbus.Policy `json:"-"`
}

// SessionDeadline is when a session started at start under this decision
// must end: the earlier of Until and start+MaxSession; zero if neither
// bounds it.
func (d Decision) SessionDeadline(start time.Time) time.Time {
	end := d.Until
	if d.MaxSession > 0 {
		if m := start.Add(d.MaxSession); end.IsZero() || m.Before(end) {
			end = m
		}
	}
	return end
}
