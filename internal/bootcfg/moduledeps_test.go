package bootcfg

import (
	"strings"
	"testing"
)

// Module dependency lists must match the module list and point only at
// earlier modules; anything else is refused with the module named.
func TestModuleDepsValidate(t *testing.T) {
	mods := []string{"a.ko", "b.ko", "c.ko"}
	for _, tc := range []struct {
		name string
		deps [][]int
		want string // "" means valid
	}{
		{"none", nil, ""},
		{"valid", [][]int{{}, {0}, {0, 1}}, ""},
		{"too few lists", [][]int{{}, {0}}, "2 lists for 3 modules"},
		{"self", [][]int{{}, {1}, {}}, "module b.ko: dependency index 1"},
		{"later module", [][]int{{2}, {}, {}}, "module a.ko: dependency index 2"},
		{"negative", [][]int{{}, {}, {-1}}, "module c.ko: dependency index -1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := (&Config{Modules: mods, ModuleDeps: tc.deps}).Validate(nil)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Validate: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("Validate: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
