package site

import (
	"net/netip"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

func decodeRoles(d *decoder, n *yaml.Node, path string, s *Site) {
	for i, it := range d.list(n, path) {
		p := index(path, i)
		f := d.fields(it, p, "name", "description")
		d.require(it, p, f, "name")
		var r Role
		if v, ok := f["name"]; ok {
			r.Name, _ = d.name(v, join(p, "name"))
		}
		if v, ok := f["description"]; ok {
			r.Description, _ = d.str(v, join(p, "description"))
		}
		s.Access.Roles = append(s.Access.Roles, r)
	}
}

func validateRoles(v *validator, s *Site) {
	seen := map[string]int{}
	for i, r := range s.Access.Roles {
		if r.Name == "" {
			continue
		}
		p := join(index("roles", i), "name")
		if first, dup := seen[r.Name]; dup {
			v.errorf(p, "duplicate role %q (first at line %d)", r.Name, v.d.lines[join(index("roles", first), "name")])
			continue
		}
		seen[r.Name] = i
	}
}

func decodeUsers(d *decoder, n *yaml.Node, path string, s *Site) {
	for i, it := range d.list(n, path) {
		p := index(path, i)
		f := d.fields(it, p, "name", "display_name", "roles", "disabled", "source_networks")
		d.require(it, p, f, "name")
		var u User
		if v, ok := f["name"]; ok {
			u.Name, _ = d.name(v, join(p, "name"))
		}
		if v, ok := f["display_name"]; ok {
			u.DisplayName, _ = d.str(v, join(p, "display_name"))
		}
		if v, ok := f["roles"]; ok {
			u.Roles = d.names(v, join(p, "roles"))
		}
		if v, ok := f["disabled"]; ok {
			u.Disabled, _ = d.boolean(v, join(p, "disabled"))
		}
		if v, ok := f["source_networks"]; ok && d.restricts(v, join(p, "source_networks"), "source_networks", "for any source") {
			sp := join(p, "source_networks")
			for j, it := range d.list(v, sp) {
				if pfx, ok := d.prefix(it, index(sp, j)); ok {
					u.SourceNetworks = append(u.SourceNetworks, pfx)
				}
			}
		}
		s.Access.Users = append(s.Access.Users, u)
	}
}

func validateUsers(v *validator, s *Site) {
	roles := roleSet(s)
	seen := map[string]int{}
	for i, u := range s.Access.Users {
		p := index("users", i)
		if u.Name != "" {
			if first, dup := seen[u.Name]; dup {
				v.errorf(join(p, "name"), "duplicate user %q (first at line %d)", u.Name, v.d.lines[join(index("users", first), "name")])
			} else {
				seen[u.Name] = i
			}
		}
		for j, r := range u.Roles {
			if !roles[r] {
				v.errorf(index(join(p, "roles"), j), "unknown role %q (known: %s)", r, known(roles))
			}
		}
	}
}

func roleSet(s *Site) map[string]bool {
	m := map[string]bool{}
	for _, r := range s.Access.Roles {
		if r.Name != "" {
			m[r.Name] = true
		}
	}
	return m
}

// known lists a set's names for "unknown X" messages.
func known(set map[string]bool) string {
	if len(set) == 0 {
		return "none declared"
	}
	names := make([]string, 0, len(set))
	for n := range set {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// names reads a list of identifiers, reporting duplicates.
func (d *decoder) names(n *yaml.Node, path string) []string {
	var out []string
	seen := map[string]bool{}
	for i, it := range d.list(n, path) {
		p := index(path, i)
		name, ok := d.name(it, p)
		if !ok {
			continue
		}
		if seen[name] {
			d.nodeErrorf(it, p, "%q listed twice", name)
			continue
		}
		seen[name] = true
		out = append(out, name)
	}
	return out
}

func (d *decoder) boolean(n *yaml.Node, path string) (bool, bool) {
	s, ok := d.scalar(n, path, "true or false", "!!bool")
	if !ok {
		return false, false
	}
	switch strings.ToLower(s) {
	case "true":
		return true, true
	case "false":
		return false, true
	}
	d.nodeErrorf(n, path, "want true or false, got %q", s)
	return false, false
}

// prefix parses an IPv4 or IPv6 CIDR in canonical form.
func (d *decoder) prefix(n *yaml.Node, path string) (netip.Prefix, bool) {
	s, ok := d.str(n, path)
	if !ok {
		return netip.Prefix{}, false
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		d.nodeErrorf(n, path, "bad CIDR %q (want e.g. 10.1.0.0/16 or 2001:db8::/32)", s)
		return netip.Prefix{}, false
	}
	if p.Addr().Is4In6() {
		d.nodeErrorf(n, path, "CIDR %q is IPv4-mapped IPv6; write the IPv4 form", s)
		return netip.Prefix{}, false
	}
	if p.Masked() != p {
		d.nodeErrorf(n, path, "CIDR %q has host bits set (did you mean %s?)", s, p.Masked())
		return netip.Prefix{}, false
	}
	return p, true
}
