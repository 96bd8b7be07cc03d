package site

import (
	"net/netip"

	"gopkg.in/yaml.v3"
)

func decodeExceptions(d *decoder, n *yaml.Node, path string, s *Site) {
	for i, it := range d.list(n, path) {
		p := index(path, i)
		f := d.fields(it, p, "from", "to", "protocol", "port", "owner", "justification", "ticket", "expires")
		d.require(it, p, f, "from", "to", "protocol", "owner", "justification", "expires")
		var e Exception
		for _, side := range []struct {
			key string
			ep  *Endpoint
		}{{"from", &e.From}, {"to", &e.To}} {
			v, ok := f[side.key]
			if !ok {
				continue
			}
			str, ok := d.str(v, join(p, side.key))
			if !ok {
				continue
			}
			if a, err := netip.ParseAddr(str); err == nil {
				if !a.Is4() {
					d.nodeErrorf(v, join(p, side.key), "bad IPv4 address %q", str)
					continue
				}
				side.ep.Address = a
			} else if err := checkName(str); err != nil {
				d.nodeErrorf(v, join(p, side.key), "want an asset name or an IPv4 address: %v", err)
			} else {
				side.ep.Asset = str
			}
		}
		if v, ok := f["protocol"]; ok {
			e.Protocol, _ = decodeProtocol(d, v, join(p, "protocol"))
		}
		if v, ok := f["port"]; ok {
			e.Port, _ = d.port(v, join(p, "port"))
		} else if e.Protocol != "" {
			if e.Port = Protocols[e.Protocol]; e.Port == 0 {
				d.nodeErrorf(it, join(p, "port"), "missing (required for protocol %q)", e.Protocol)
			}
		}
		if v, ok := f["owner"]; ok {
			e.Owner, _ = d.str(v, join(p, "owner"))
		}
		if v, ok := f["justification"]; ok {
			e.Justification, _ = d.str(v, join(p, "justification"))
		}
		if v, ok := f["ticket"]; ok {
			e.Ticket, _ = d.str(v, join(p, "ticket"))
		}
		if v, ok := f["expires"]; ok {
			e.Expires, _ = d.timestamp(v, join(p, "expires"))
		}
		s.Exceptions = append(s.Exceptions, e)
	}
}

// flowKey identifies an exception's flow once its endpoints are resolved
// to addresses: an asset and its address are the same endpoint.
type flowKey struct {
	from, to netip.Addr
	protocol string
	port     uint16
}

func validateExceptions(v *validator, s *Site) {
	max := s.Limits.MaxExceptionLifetime
	flows := map[flowKey]int{}
	for i := range s.Exceptions {
		e := &s.Exceptions[i]
		p := index("exceptions", i)
		for _, side := range []struct {
			key string
			ep  *Endpoint
		}{{"from", &e.From}, {"to", &e.To}} {
			fp := join(p, side.key)
			switch {
			case side.ep.Asset != "":
				a := v.assets[side.ep.Asset]
				if a == nil {
					v.errorf(fp, "unknown asset %q", side.ep.Asset)
					continue
				}
				side.ep.Address = a.Address
			case side.ep.Address.IsValid():
				if gz, gp, ok := v.gateZone(s, side.ep.Address); ok {
					v.errorf(fp, "address %s is the gate's own address in zone %q (%s); an exception is a flow between assets", side.ep.Address, gz.Name, gp)
				} else if !inSomeZone(s, side.ep.Address) {
					v.errorf(fp, "address %s is in no zone's subnet", side.ep.Address)
				}
			}
		}
		if e.From.Address.IsValid() && e.To.Address.IsValid() && e.Protocol != "" && e.Port != 0 {
			k := flowKey{e.From.Address, e.To.Address, e.Protocol, e.Port}
			if j, dup := flows[k]; dup {
				jp := index("exceptions", j)
				v.errorf(p, "duplicate exception: %s to %s, %s port %d is also %s (line %d)", e.From, e.To, e.Protocol, e.Port, jp, v.d.lines[jp])
			} else {
				flows[k] = i
			}
		}
		if e.From.Address.IsValid() && e.From.Address == e.To.Address {
			v.errorf(join(p, "to"), "from and to are the same endpoint (%s)", e.To)
		}
		if !e.Expires.IsZero() {
			fp := join(p, "expires")
			switch {
			case !e.Expires.After(v.now):
				v.errorf(fp, "expired at %s (now %s)", e.Expires.Format("2006-01-02T15:04:05Z07:00"), v.now.UTC().Format("2006-01-02T15:04:05Z07:00"))
			case e.Expires.Sub(v.now) > max:
				v.errorf(fp, "expiry %s is more than the maximum exception lifetime (%s) from now; limit: %s", e.Expires.Format("2006-01-02T15:04:05Z07:00"), max, v.now.Add(max).UTC().Format("2006-01-02T15:04:05Z07:00"))
			}
		}
	}
}

func inSomeZone(s *Site, a netip.Addr) bool {
	for _, z := range s.Zones {
		if z.Subnet.IsValid() && z.Subnet.Contains(a) {
			return true
		}
	}
	return false
}
