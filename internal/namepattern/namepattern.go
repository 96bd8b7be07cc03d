// Package namepattern checks names of the form "one character of a class,
// then up to N of another" (user, role, secret, interface and asset
// names) without a counted regexp repetition: `[a-z]{0,63}` compiles to
// dozens of states and allocates tens of KiB at package init, in every
// process of the appliance's multi-call binary; a plain `*` and a length
// check say the same.
package namepattern

import (
	"fmt"
	"regexp"
)

// Pattern matches ^first rest{0,max-1}$ for character classes first and
// rest (e.g. "[a-z]", "[a-z0-9._-]").
type Pattern struct {
	first, rest string
	max         int
	re          *regexp.Regexp
}

// New compiles the pattern; it panics on a bad class, as
// regexp.MustCompile does.
func New(first, rest string, max int) *Pattern {
	if max < 1 {
		panic(fmt.Sprintf("namepattern: max %d < 1", max))
	}
	return &Pattern{first: first, rest: rest, max: max, re: regexp.MustCompile("^" + first + rest + "*$")}
}

// MatchString tells whether s is a name of the pattern.
func (p *Pattern) MatchString(s string) bool {
	return len(s) <= p.max && p.re.MatchString(s)
}

// String is the pattern as a regexp with the counted repetition, for
// error messages.
func (p *Pattern) String() string {
	return fmt.Sprintf("^%s%s{0,%d}$", p.first, p.rest, p.max-1)
}
