package proxy

import (
	"fmt"
	"time"

	"github.com/otgate/otgate/policy"
	"github.com/otgate/otgate/site"
)

// PolicyDecider adapts a compiled *policy.Policy to Decider. Roles come
// from the site file (the policy ignores the certificate's); a zone in
// monitor mode makes Modbus denials would-deny records.
type PolicyDecider struct {
	P    *policy.Policy
	Site *site.Site
}

// Decide asks the policy; Until is the session deadline (the earlier of
// the decision's Until and the grant's max session length).
func (d PolicyDecider) Decide(r DecisionRequest) Decision {
	pd := d.P.Decide(policy.Request{User: r.User, Asset: r.Asset, Protocol: r.Protocol, Source: r.Source, Time: r.Time})
	out := Decision{Allow: pd.Allow, Rule: pd.Rule, Reason: pd.Reason, Until: pd.SessionDeadline(r.Time), MaxSession: pd.MaxSession, Modbus: pd.Modbus}
	out.SessionBound = pd.MaxSession > 0 && !out.Until.Equal(pd.Until)
	for _, a := range d.Site.Assets {
		if a.Name == r.Asset {
			if z, ok := d.Site.ZoneByName(a.Zone); ok && z.Mode == site.ModeMonitor {
				out.Monitor = true
			}
		}
	}
	return out
}

// SiteFileLoader loads and validates the site file at path and compiles
// its policy; errors name file:line:field.
func SiteFileLoader(path string) PolicyLoader {
	return func() (*Policy, error) {
		s, _, err := site.Load(path, site.Options{Now: time.Now()})
		if err != nil {
			return nil, err
		}
		p, err := policy.Compile(s)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return &Policy{Site: s, Decider: PolicyDecider{P: p, Site: s}, Source: path}, nil
	}
}

// AppliedPolicyLoader loads the compiled policy the gate applies
// (/perm/policy/applied.cbor, written by `otgate site apply`) and compiles
// its decisions. A missing or corrupt file is an error naming it; at a
// reload the old policy then stays in force.
func AppliedPolicyLoader(path string) PolicyLoader {
	return func() (*Policy, error) {
		a, err := site.LoadApplied(path)
		if err != nil {
			return nil, err
		}
		s := &a.Site
		p, err := policy.Compile(s)
		if err != nil {
			return nil, fmt.Errorf("%s (from %s): %w", path, a.Source, err)
		}
		return &Policy{Site: s, Decider: PolicyDecider{P: p, Site: s}, Source: path + " (" + a.Source + ")"}, nil
	}
}
