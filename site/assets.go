package site

import (
	"net"
	"net/netip"
	"strings"

	"gopkg.in/yaml.v3"
)

func decodeAssets(d *decoder, n *yaml.Node, path string, s *Site) {
	for i, it := range d.list(n, path) {
		p := index(path, i)
		f := d.fields(it, p, "name", "zone", "address", "mac", "services", "overlay")
		d.require(it, p, f, "name", "zone", "address", "services")
		var a Asset
		if v, ok := f["name"]; ok {
			a.Name, _ = d.name(v, join(p, "name"))
		}
		if v, ok := f["zone"]; ok {
			a.Zone, _ = d.name(v, join(p, "zone"))
		}
		if v, ok := f["address"]; ok {
			a.Address, _ = d.ipv4(v, join(p, "address"))
		}
		if v, ok := f["mac"]; ok {
			if m, ok := d.str(v, join(p, "mac")); ok {
				hw, err := net.ParseMAC(m)
				if err != nil || len(hw) != 6 {
					d.nodeErrorf(v, join(p, "mac"), "bad MAC address %q (want e.g. 00:1d:9c:c7:b0:70)", m)
				} else {
					a.MAC = strings.ToLower(hw.String())
				}
			}
		}
		if v, ok := f["services"]; ok {
			sp := join(p, "services")
			items := d.list(v, sp)
			if len(items) == 0 && v.Kind == yaml.SequenceNode {
				d.nodeErrorf(v, sp, "must list at least one service")
			}
			for j, sv := range items {
				if svc, ok := decodeService(d, sv, index(sp, j)); ok {
					a.Services = append(a.Services, svc)
				}
			}
		}
		if v, ok := f["overlay"]; ok {
			a.Overlay, _ = d.ipv4(v, join(p, "overlay"))
		}
		s.Assets = append(s.Assets, a)
	}
}

// decodeService reads {protocol, port}; port defaults to the protocol's
// well-known port.
func decodeService(d *decoder, n *yaml.Node, p string) (Service, bool) {
	f := d.fields(n, p, "protocol", "port")
	d.require(n, p, f, "protocol")
	var svc Service
	ok := true
	if v, has := f["protocol"]; has {
		proto, good := decodeProtocol(d, v, join(p, "protocol"))
		svc.Protocol, ok = proto, good
	} else {
		ok = false
	}
	if v, has := f["port"]; has {
		port, good := d.port(v, join(p, "port"))
		svc.Port, ok = port, ok && good
	} else if ok {
		svc.Port = Protocols[svc.Protocol]
		if svc.Port == 0 {
			d.nodeErrorf(n, join(p, "port"), "missing (required for protocol %q)", svc.Protocol)
			ok = false
		}
	}
	// Port 502 is Modbus/TCP's. Declared as another protocol (tcp, say),
	// a grant for that protocol would relay it raw: every function code
	// and register, past the Modbus rules the gate exists to enforce.
	if ok && svc.Port == Protocols["modbus"] && svc.Protocol != "modbus" {
		d.nodeErrorf(n, join(p, "protocol"), "port %d is Modbus/TCP's; declare it protocol modbus so the gate inspects it (as %q its requests would be relayed uninspected)",
			svc.Port, svc.Protocol)
		ok = false
	}
	return svc, ok && f != nil
}

func decodeProtocol(d *decoder, n *yaml.Node, p string) (string, bool) {
	proto, ok := d.str(n, p)
	if !ok {
		return "", false
	}
	if _, known := Protocols[proto]; !known {
		d.nodeErrorf(n, p, "unknown protocol %q (known: %s)", proto, knownProtocols())
		return "", false
	}
	return proto, true
}

func validateAssets(v *validator, s *Site) {
	v.assets = map[string]*Asset{}
	addrs := map[netip.Addr]string{}
	macs := map[string]string{}
	pins := map[netip.Addr]string{}
	for i := range s.Assets {
		a := &s.Assets[i]
		p := index("assets", i)
		if a.Name != "" {
			if first, dup := v.assets[a.Name]; dup {
				v.errorf(join(p, "name"), "duplicate asset %q (also in zone %q)", a.Name, first.Zone)
			} else {
				v.assets[a.Name] = a
			}
		}
		var zone *Zone
		if a.Zone != "" {
			if zone = v.zones[a.Zone]; zone == nil {
				v.errorf(join(p, "zone"), "unknown zone %q (known: %s)", a.Zone, v.knownZones())
			}
		}
		if a.Address.IsValid() {
			if other, dup := addrs[a.Address]; dup {
				v.errorf(join(p, "address"), "duplicate address %s (also asset %q)", a.Address, other)
			} else {
				addrs[a.Address] = a.Name
			}
			if gz, gp, ok := v.gateZone(s, a.Address); ok {
				v.errorf(join(p, "address"), "address %s is the gate's own address in zone %q (%s, line %d)", a.Address, gz.Name, gp, v.d.lines[gp])
			}
			if zone != nil && zone.Subnet.IsValid() {
				switch {
				case !zone.Subnet.Contains(a.Address):
					v.errorf(join(p, "address"), "address %s is outside zone %q subnet %s", a.Address, zone.Name, zone.Subnet)
				case IsNetworkOrBroadcast(a.Address, zone.Subnet):
					v.errorf(join(p, "address"), "address %s is the network or broadcast address of zone %q subnet %s", a.Address, zone.Name, zone.Subnet)
				}
			}
		}
		if a.MAC != "" {
			if other, dup := macs[a.MAC]; dup {
				v.errorf(join(p, "mac"), "duplicate MAC %s (also asset %q)", a.MAC, other)
			} else {
				macs[a.MAC] = a.Name
			}
		}
		seen := map[uint16]string{}
		ports := map[string]uint16{}
		for j, svc := range a.Services {
			if other, dup := seen[svc.Port]; dup {
				v.errorf(index(join(p, "services"), j), "port %d listed twice (%s and %s)", svc.Port, other, svc.Protocol)
			}
			seen[svc.Port] = svc.Protocol
			// A connection names the asset and the protocol, not a
			// port: a second port of the same protocol could not be
			// reached through the proxy (it would take one of them).
			if other, dup := ports[svc.Protocol]; dup && other != svc.Port {
				v.errorf(index(join(p, "services"), j), "protocol %s listed twice (ports %d and %d): a connection names the asset and the protocol, so an asset serves each protocol on one port; describe the other port as an asset of its own", svc.Protocol, other, svc.Port)
			} else if !dup {
				ports[svc.Protocol] = svc.Port
			}
		}
		if a.Overlay.IsValid() {
			validatePin(v, s, join(p, "overlay"), a, pins)
		}
	}
}

func validatePin(v *validator, s *Site, p string, a *Asset, pins map[netip.Addr]string) {
	o := s.Overlay
	switch {
	case v.d.failed["overlay.prefix"] || v.d.failed["overlay.gate"]:
		return // the overlay settings themselves are wrong and reported
	case !o.Prefix.Contains(a.Overlay):
		v.errorf(p, "pinned overlay address %s is outside the overlay prefix %s", a.Overlay, o.Prefix)
		return
	case IsNetworkOrBroadcast(a.Overlay, o.Prefix):
		v.errorf(p, "pinned overlay address %s is the network or broadcast address of the overlay prefix %s", a.Overlay, o.Prefix)
		return
	case a.Overlay == o.Gate:
		v.errorf(p, "pinned overlay address %s is the gate's own overlay address", a.Overlay)
		return
	}
	if other, dup := pins[a.Overlay]; dup {
		v.errorf(p, "pinned overlay address %s collides with asset %q", a.Overlay, other)
		return
	}
	pins[a.Overlay] = a.Name
}
