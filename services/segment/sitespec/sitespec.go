// Package sitespec compiles the applied site policy (package site) into the
// segment service's desired state (ruleset.Spec): every zone's assets with
// the zone's mode, each asset's underlay IPv4 address and TCP service
// ports, the exceptions with their expiry, on top of the gate's baseline
// (its interfaces, listeners and the proxy's identity, package baseline).
//
// The site file knows the OT interfaces by zone; the gate knows its
// downlinks by board. A zone must sit on one of the gate's downlinks (or a
// VLAN sub-interface of one, named "<parent>.<vlan>" as netconf makes it),
// otherwise its assets would be reachable on an interface the ruleset does
// not treat as the OT side: that is an error, never a silent drop. Every
// OT interface but those that carry monitor zones alone is listed in
// Spec.EnforceInterfaces, so a monitor zone's assets reach no undeclared
// host there: an interface an enforce zone sits on (the sub-interface for
// a VLAN zone), also when a monitor zone shares it, and one that carries
// no zone at all (a downlink left unused, the untagged parent of VLAN
// zones): fail closed.
package sitespec

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/otgate/otgate/services/segment/ruleset"
	"github.com/otgate/otgate/site"
)

// ErrSite is wrapped by every error about the site against this gate.
var ErrSite = errors.New("site policy does not fit this gate")

// Spec builds the segment spec for site s on a gate with baseline b. The
// result is validated (ruleset.Spec.Validate).
func Spec(s *site.Site, b ruleset.BaselineSpec) (*ruleset.Spec, error) {
	spec := &ruleset.Spec{BaselineSpec: b}
	spec.Downlinks = append([]string(nil), b.Downlinks...)
	spec.ListenPorts = append([]uint16(nil), b.ListenPorts...)
	isDownlink := map[string]bool{}
	for _, d := range b.Downlinks {
		isDownlink[d] = true
	}
	mode := map[string]string{}
	enforced, monitored := map[string]bool{}, map[string]bool{}
	for _, z := range s.Zones {
		if !isDownlink[z.Interface] {
			return nil, fmt.Errorf("%w: zone %q: interface %s is not an OT downlink of this gate (downlinks: %s)",
				ErrSite, z.Name, z.Interface, strings.Join(b.Downlinks, ", "))
		}
		if z.VLAN != 0 {
			name := z.IfName()
			if !contains(spec.Downlinks, name) {
				spec.Downlinks = append(spec.Downlinks, name)
			}
		}
		switch z.Mode {
		case site.ModeEnforce:
			mode[z.Name] = ruleset.ModeEnforce
			// Its interface stays enforced whatever else it carries: a
			// monitor zone beside it (fail closed) or other zones' modes.
			enforced[z.IfName()] = true
		case site.ModeMonitor:
			mode[z.Name] = ruleset.ModeMonitor
			monitored[z.IfName()] = true
		default:
			return nil, fmt.Errorf("%w: zone %q: mode %q", ErrSite, z.Name, z.Mode)
		}
	}
	for _, d := range spec.Downlinks {
		if enforced[d] || !monitored[d] {
			spec.EnforceInterfaces = append(spec.EnforceInterfaces, d)
		}
	}
	for _, a := range s.Assets {
		m, ok := mode[a.Zone]
		if !ok {
			return nil, fmt.Errorf("%w: asset %q: unknown zone %q", ErrSite, a.Name, a.Zone)
		}
		ra := ruleset.Asset{Name: a.Name, Zone: a.Zone, Mode: m, Address: a.Address.String(), TCPPorts: servicePorts(a.Services)}
		if a.Overlay.IsValid() {
			ra.Endpoint = a.Overlay.String()
		}
		spec.Assets = append(spec.Assets, ra)
	}
	for i, e := range s.Exceptions {
		spec.Exceptions = append(spec.Exceptions, ruleset.Exception{
			ID:   exceptionID(i, e),
			From: e.From.Address.String(), To: e.To.Address.String(),
			// Every protocol of the site file is carried over TCP
			// (site.Protocols names a TCP port for each).
			Protocol: "tcp", Port: e.Port,
			Owner: e.Owner, Expires: e.Expires,
		})
	}
	if err := spec.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSite, err)
	}
	return spec, nil
}

// servicePorts is the sorted set of an asset's TCP ports.
func servicePorts(svcs []site.Service) []uint16 {
	seen := map[uint16]bool{}
	var out []uint16
	for _, s := range svcs {
		if !seen[s.Port] {
			seen[s.Port] = true
			out = append(out, s.Port)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// exceptionID names an exception by its place in the file and its flow,
// e.g. "2-hmi-1-to-plc-2-44818": stable while the file does not reorder
// its exceptions, and readable in `otgate segment status`.
func exceptionID(i int, e site.Exception) string {
	id := fmt.Sprintf("%d-%s-to-%s-%d", i+1, e.From, e.To, e.Port)
	if len(id) > 63 {
		id = id[:63]
	}
	return id
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
