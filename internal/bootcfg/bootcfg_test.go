package bootcfg

import (
	"slices"
	"strings"
	"testing"
)

// A nice value outside the kernel's range, a skip condition on a
// long-running service or with a relative path, a service directory that
// is not a clean absolute path or is listed twice, or group-readable
// directories for a service in group 0 are refused by name; valid values
// survive the CBOR round trip.
func TestServiceNiceSkipAndDirsValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		svc  Service
		want string
	}{
		{"defaults", Service{}, ""},
		{"nice -10", Service{Nice: -10}, ""},
		{"nice 19", Service{Nice: 19}, ""},
		{"nice -21", Service{Nice: -21}, `service "s": nice -21 is outside -20..19`},
		{"nice 20", Service{Nice: 20}, "nice 20 is outside"},
		{"skip one-shot", Service{Readiness: ReadyExit, SkipIfExists: "/perm/x"}, ""},
		{"skip long-running", Service{SkipIfExists: "/perm/x"}, `service "s": skip-if-exists "/perm/x": only a one-shot`},
		{"skip relative", Service{Readiness: ReadyExit, SkipIfExists: "perm/x"}, "the path must be absolute"},
		{"dirs", Service{UID: 101, GID: 101, OwnedDirs: []string{"/perm/a", "/run/otgate/a"}, GroupReadDirs: []string{"/perm/policy"}}, ""},
		{"owned relative", Service{OwnedDirs: []string{"perm/a"}}, `service "s": owned directory "perm/a": want a clean absolute path`},
		{"owned unclean", Service{OwnedDirs: []string{"/perm/../etc"}}, "want a clean absolute path"},
		{"owned root", Service{OwnedDirs: []string{"/"}}, "want a clean absolute path below /"},
		{"dir twice", Service{GID: 101, OwnedDirs: []string{"/perm/a"}, GroupReadDirs: []string{"/perm/a"}}, `group-readable directory "/perm/a": listed twice`},
		{"group read as root", Service{GroupReadDirs: []string{"/perm/policy"}}, "runs as group 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.svc
			s.Name, s.Binary = "s", "/bin/s"
			if s.Readiness == "" {
				s.Readiness = ReadyNotify
			}
			err := (&Config{Services: []Service{s}}).Validate(nil)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Validate: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("Validate: %v, want an error containing %q", err, tc.want)
			}
			// The fields survive the CBOR round trip.
			b, err := Marshal(&Config{Services: []Service{s}})
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == "" {
				c, err := Unmarshal(b)
				if err != nil {
					t.Fatal(err)
				}
				if got := c.Services[0]; got.Nice != s.Nice || got.SkipIfExists != s.SkipIfExists ||
					!slices.Equal(got.OwnedDirs, s.OwnedDirs) || !slices.Equal(got.GroupReadDirs, s.GroupReadDirs) {
					t.Errorf("round trip: %+v, want %+v", got, s)
				}
			}
		})
	}
}
