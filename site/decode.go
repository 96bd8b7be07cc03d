package site

import (
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// decoder walks yaml nodes, recording the line of every field path and
// collecting problems instead of stopping at the first.
type decoder struct {
	file  string
	errs  ErrorList
	lines map[string]int
	// failed holds every path with a problem, so validators can skip
	// checks that would only repeat it.
	failed map[string]bool
}

func (d *decoder) errorf(line int, path, format string, args ...any) {
	d.failed[path] = true
	d.errs = append(d.errs, Error{File: d.file, Line: line, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// nodeErrorf reports a problem at node n.
func (d *decoder) nodeErrorf(n *yaml.Node, path, format string, args ...any) {
	d.errorf(n.Line, path, format, args...)
}

// kindName names a node kind for "want X, got Y" messages.
func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "nothing (null)"
		}
		return fmt.Sprintf("%s %q", strings.TrimPrefix(n.ShortTag(), "!!"), n.Value)
	case yaml.AliasNode:
		return "an alias"
	}
	return "something else"
}

// usable rejects aliases (not allowed in a site file: they hide what
// applies where and can expand without bound).
func (d *decoder) usable(n *yaml.Node, path string) bool {
	if n.Kind == yaml.AliasNode || n.Anchor != "" {
		d.nodeErrorf(n, path, "anchors and aliases are not allowed in a site file")
		return false
	}
	return true
}

// fields checks that n is a mapping with only known, non-duplicated keys
// and returns the value node of each present key. It records each
// field's line under path.key.
func (d *decoder) fields(n *yaml.Node, path string, known ...string) map[string]*yaml.Node {
	if !d.usable(n, path) {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		d.nodeErrorf(n, path, "want a mapping, got %s", kindName(n))
		return nil
	}
	out := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.Tag == "!!merge" {
			d.nodeErrorf(k, path, "want a field name, got %s", kindName(k))
			continue
		}
		fp := join(path, k.Value)
		ok := false
		for _, f := range known {
			if f == k.Value {
				ok = true
				break
			}
		}
		if !ok {
			d.nodeErrorf(k, fp, "unknown field (known: %s)", strings.Join(known, ", "))
			continue
		}
		if _, dup := out[k.Value]; dup {
			d.nodeErrorf(k, fp, "duplicate field (first on line %d)", d.lines[fp])
			continue
		}
		out[k.Value] = v
		d.lines[fp] = k.Line
	}
	return out
}

func join(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

func index(path string, i int) string { return fmt.Sprintf("%s[%d]", path, i) }

// list checks that n is a sequence and returns its items, recording the
// line of each item.
func (d *decoder) list(n *yaml.Node, path string) []*yaml.Node {
	if !d.usable(n, path) {
		return nil
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		d.nodeErrorf(n, path, "want a list, got %s", kindName(n))
		return nil
	}
	for i, it := range n.Content {
		d.lines[index(path, i)] = it.Line
	}
	return n.Content
}

// restricts reports whether n, the value of a list whose absence means
// "no restriction" (a grant's windows, dates and maintenance, a user's
// source networks), restricts something. An empty list, or the key with
// no value (every entry commented out, say), would read as the key left
// out and lift the restriction without a word: both are refused, saying
// how to write "none" (leave key out for what).
func (d *decoder) restricts(n *yaml.Node, path, key, what string) bool {
	switch {
	case n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null":
		d.nodeErrorf(n, path, "no value (leave %s out %s)", key, what)
	case n.Kind == yaml.SequenceNode && len(n.Content) == 0:
		d.nodeErrorf(n, path, "empty list (leave %s out %s)", key, what)
	default:
		return true
	}
	return false
}

// scalar returns n's text if it is a plain scalar of one of the tags.
func (d *decoder) scalar(n *yaml.Node, path, want string, tags ...string) (string, bool) {
	if !d.usable(n, path) {
		return "", false
	}
	if n.Kind == yaml.ScalarNode {
		for _, t := range tags {
			if n.ShortTag() == t {
				return n.Value, true
			}
		}
	}
	d.nodeErrorf(n, path, "want %s, got %s", want, kindName(n))
	return "", false
}

func (d *decoder) str(n *yaml.Node, path string) (string, bool) {
	s, ok := d.scalar(n, path, "a string", "!!str")
	if ok && strings.TrimSpace(s) == "" {
		d.nodeErrorf(n, path, "must not be empty")
		return "", false
	}
	return s, ok
}

func (d *decoder) integer(n *yaml.Node, path string, lo, hi int) (int, bool) {
	s, ok := d.scalar(n, path, "an integer", "!!int")
	if !ok {
		return 0, false
	}
	// Decimal only: YAML (and strconv's base 0) read "0502" as octal 322,
	// "0x1F" as hex; a port or unit id that silently means another number
	// is worse than an error.
	if leadingZero(s) {
		if u := strings.ToLower(strings.TrimLeft(s, "+-")); strings.HasPrefix(u, "0x") || strings.HasPrefix(u, "0o") || strings.HasPrefix(u, "0b") {
			d.nodeErrorf(n, path, "%s is not a decimal number; write it in decimal", s)
		} else {
			d.nodeErrorf(n, path, "%s has a leading zero, which YAML reads as octal; write the decimal number without it", s)
		}
		return 0, false
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		d.nodeErrorf(n, path, "%s is not a decimal integer", s)
		return 0, false
	}
	if v < int64(lo) || v > int64(hi) {
		d.nodeErrorf(n, path, "%s is out of range %d..%d", s, lo, hi)
		return 0, false
	}
	return int(v), true
}

// leadingZero says whether the integer s (optionally signed) is written
// with a leading zero or a base prefix: "010", "0x10", "0o10", "-07".
func leadingZero(s string) bool {
	s = strings.TrimLeft(s, "+-")
	return len(s) > 1 && s[0] == '0'
}

func (d *decoder) port(n *yaml.Node, path string) (uint16, bool) {
	v, ok := d.integer(n, path, 1, math.MaxUint16)
	return uint16(v), ok
}

func (d *decoder) ipv4(n *yaml.Node, path string) (netip.Addr, bool) {
	s, ok := d.str(n, path)
	if !ok {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		d.nodeErrorf(n, path, "bad IPv4 address %q", s)
		return netip.Addr{}, false
	}
	return a, true
}

// prefix4 parses an IPv4 CIDR that must be in canonical form (no host
// bits set: 10.1.2.0/24, not 10.1.2.3/24).
func (d *decoder) prefix4(n *yaml.Node, path string) (netip.Prefix, bool) {
	s, ok := d.str(n, path)
	if !ok {
		return netip.Prefix{}, false
	}
	p, err := netip.ParsePrefix(s)
	if err != nil || !p.Addr().Is4() {
		d.nodeErrorf(n, path, "bad IPv4 CIDR %q", s)
		return netip.Prefix{}, false
	}
	if p.Masked() != p {
		d.nodeErrorf(n, path, "CIDR %q has host bits set (did you mean %s?)", s, p.Masked())
		return netip.Prefix{}, false
	}
	return p, true
}

// duration accepts Go durations (36h, 90m) and whole days (90d).
func (d *decoder) duration(n *yaml.Node, path string) (time.Duration, bool) {
	s, ok := d.str(n, path)
	if !ok {
		return 0, false
	}
	v, err := parseDuration(s)
	if err != nil {
		d.nodeErrorf(n, path, "%v", err)
		return 0, false
	}
	return v, true
}

// maxDuration bounds every duration in a site file, written in days or
// not: the services store ends computed from them (an overlay quarantine
// of 2500000h overflowed the allocator's stored end date).
const maxDuration = 100 * 365 * 24 * time.Hour

func parseDuration(s string) (time.Duration, error) {
	var v time.Duration
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseUint(days, 10, 31)
		if err != nil || n > 100*365 {
			return 0, fmt.Errorf("bad duration %q (want e.g. 90d, 36h, 15m)", s)
		}
		v = time.Duration(n) * 24 * time.Hour
	} else {
		var err error
		v, err = time.ParseDuration(s)
		if err != nil {
			return 0, fmt.Errorf("bad duration %q (want e.g. 90d, 36h, 15m)", s)
		}
	}
	if v <= 0 {
		return 0, fmt.Errorf("duration %q must be positive", s)
	}
	if v > maxDuration {
		return 0, fmt.Errorf("duration %q is longer than 100 years (36500d)", s)
	}
	return v, nil
}

func (d *decoder) timestamp(n *yaml.Node, path string) (time.Time, bool) {
	s, ok := d.scalar(n, path, "an RFC 3339 time", "!!str", "!!timestamp")
	if !ok {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		d.nodeErrorf(n, path, "bad time %q (want RFC 3339, e.g. 2026-03-01T00:00:00Z)", s)
		return time.Time{}, false
	}
	return t.UTC(), true
}

// name checks an identifier: lower-case letters, digits, '-', '_', '.';
// starting with a letter or digit; at most 63 characters; not an address.
func (d *decoder) name(n *yaml.Node, path string) (string, bool) {
	s, ok := d.str(n, path)
	if !ok {
		return "", false
	}
	if err := checkName(s); err != nil {
		d.nodeErrorf(n, path, "%v", err)
		return "", false
	}
	return s, true
}

func checkName(s string) error {
	if len(s) > 63 {
		return fmt.Errorf("name %q is longer than 63 characters", s)
	}
	for i, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
		case (r == '-' || r == '_' || r == '.') && i > 0:
		default:
			return fmt.Errorf("bad name %q (want lower-case letters, digits, '-', '_', '.', starting with a letter or digit)", s)
		}
	}
	if _, err := netip.ParseAddr(s); err == nil {
		return fmt.Errorf("bad name %q: a name must not look like an address", s)
	}
	return nil
}

// require reports every missing required field of a mapping at path.
func (d *decoder) require(n *yaml.Node, path string, f map[string]*yaml.Node, names ...string) {
	if f == nil {
		return
	}
	for _, k := range names {
		if _, ok := f[k]; !ok {
			d.nodeErrorf(n, join(path, k), "missing (required)")
		}
	}
}
