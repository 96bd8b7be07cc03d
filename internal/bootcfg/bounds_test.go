package bootcfg

import (
	"strings"
	"testing"
	"time"
)

// The durations init adds up are bounded at load, by name: a stop grace
// or readiness timeout out of range (negative, or big enough to wrap
// init's sums) is refused, the bounds themselves are accepted.
func TestDurationBounds(t *testing.T) {
	for _, tc := range []struct {
		name    string
		grace   time.Duration
		timeout time.Duration
		want    string
	}{
		{"defaults", 0, 0, ""},
		{"at the bounds", MaxStopGrace, MaxReadyTimeout, ""},
		{"grace over", MaxStopGrace + 1, 0, "stop grace 10m0.000000001s is outside 0 to 10m0s (0: init's default)"},
		{"grace huge", 1 << 62, 0, "stop grace 1281023h53m38.427387904s is outside 0 to 10m0s"},
		{"grace negative", -time.Second, 0, "stop grace -1s is outside 0 to 10m0s"},
		{"timeout over", 0, MaxReadyTimeout + time.Second, `service "s": readiness timeout 1h0m1s is outside 0 to 1h0m0s (0: init's default)`},
		{"timeout negative", 0, -time.Second, `service "s": readiness timeout -1s is outside 0 to 1h0m0s`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &Config{StopGrace: tc.grace, Services: []Service{{Name: "s", Binary: "/bin/s", Readiness: ReadyNotify, Timeout: tc.timeout}}}
			b, err := Marshal(c)
			if err != nil {
				t.Fatal(err)
			}
			_, err = Unmarshal(b)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Unmarshal: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("Unmarshal: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
