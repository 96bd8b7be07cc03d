package namepattern

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// A Pattern accepts exactly what the counted regexp it stands for
// accepts, and prints as that regexp.
func TestSameAsCountedRegexp(t *testing.T) {
	for _, tc := range []struct {
		first, rest string
		max         int
	}{
		{"[a-z]", "[a-z0-9._-]", 64},
		{"[A-Za-z0-9]", "[A-Za-z0-9._@-]", 15},
		{"[a-z0-9]", "[a-z0-9._-]", 1},
	} {
		p := New(tc.first, tc.rest, tc.max)
		want := regexp.MustCompile(p.String())
		if p.String() != "^"+tc.first+tc.rest+"{0,"+strconv.Itoa(tc.max-1)+"}$" {
			t.Errorf("String() = %s", p)
		}
		inputs := []string{"", "a", "A", "0", "-a", "a-", "a.b_c-d", "alice", "Alice", "eth0.100", "x@y", "a b", "é",
			strings.Repeat("a", tc.max-1), strings.Repeat("a", tc.max), strings.Repeat("a", tc.max+1), "a" + strings.Repeat("0", tc.max)}
		for _, s := range inputs {
			if got, w := p.MatchString(s), want.MatchString(s); got != w {
				t.Errorf("%s: MatchString(%q) = %v, regexp says %v", p, s, got, w)
			}
		}
	}
}
