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

// Numbers that would turn a safety off without saying so are refused at
// load, naming the field and the allowed range: a negative, zero-width or
// huge crash-loop window (a negative window never held a restart, so a
// crash loop was never seen), a crash-loop limit set without its window
// or beyond reach, a watchdog timeout too short to pet or absurdly long,
// and (uid_t)-1, no id (setresuid takes it as "unchanged": root). Zero is
// "off" or "init's default" only where documented (CrashLoop{}, Watchdog
// timeout 0), and the bounds themselves are accepted.
func TestNumericBounds(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"crash loop off", Config{CrashLoop: CrashLoop{}}, ""},
		{"crash loop at the low bounds", Config{CrashLoop: CrashLoop{Restarts: 1, Window: MinCrashLoopWindow}}, ""},
		{"crash loop at the high bounds", Config{CrashLoop: CrashLoop{Restarts: MaxCrashLoopRestarts, Window: MaxCrashLoopWindow}}, ""},
		{"crash loop window negative", Config{CrashLoop: CrashLoop{Restarts: 5, Window: -30 * time.Second}},
			"crash loop window -30s is outside 1s to 24h0m0s (with crash loop restarts 5; both 0: no crash-loop detection)"},
		{"crash loop window zero", Config{CrashLoop: CrashLoop{Restarts: 5}}, "crash loop window 0s is outside 1s to 24h0m0s"},
		{"crash loop window too short", Config{CrashLoop: CrashLoop{Restarts: 5, Window: MinCrashLoopWindow - 1}}, "crash loop window 999.999999ms is outside 1s to 24h0m0s"},
		{"crash loop window too long", Config{CrashLoop: CrashLoop{Restarts: 5, Window: MaxCrashLoopWindow + 1}}, "crash loop window 24h0m0.000000001s is outside 1s to 24h0m0s"},
		{"crash loop restarts negative", Config{CrashLoop: CrashLoop{Restarts: -1, Window: 30 * time.Second}},
			"crash loop restarts -1 is outside 1 to 100 (with crash loop window 30s; both 0: no crash-loop detection)"},
		{"crash loop restarts zero", Config{CrashLoop: CrashLoop{Window: 30 * time.Second}}, "crash loop restarts 0 is outside 1 to 100"},
		{"crash loop restarts huge", Config{CrashLoop: CrashLoop{Restarts: 1 << 40, Window: 30 * time.Second}}, "crash loop restarts 1099511627776 is outside 1 to 100"},
		{"crash loop restarts over", Config{CrashLoop: CrashLoop{Restarts: MaxCrashLoopRestarts + 1, Window: 30 * time.Second}}, "crash loop restarts 101 is outside 1 to 100"},
		{"watchdog default", Config{Watchdog: Watchdog{Device: "/dev/watchdog"}}, ""},
		{"watchdog at the bounds", Config{Watchdog: Watchdog{Device: "/dev/watchdog", Timeout: MinWatchdogTimeout}}, ""},
		{"watchdog at the high bound", Config{Watchdog: Watchdog{Device: "/dev/watchdog", Timeout: MaxWatchdogTimeout}}, ""},
		{"watchdog negative", Config{Watchdog: Watchdog{Device: "/dev/watchdog", Timeout: -time.Second}},
			"watchdog timeout -1s is outside 100ms to 10m0s (0: init's default)"},
		{"watchdog too short", Config{Watchdog: Watchdog{Device: "/dev/watchdog", Timeout: time.Millisecond}}, "watchdog timeout 1ms is outside 100ms to 10m0s"},
		{"watchdog too long", Config{Watchdog: Watchdog{Device: "/dev/watchdog", Timeout: MaxWatchdogTimeout + time.Second}}, "watchdog timeout 10m1s is outside 100ms to 10m0s"},
		{"uid (uid_t)-1", Config{Services: []Service{{UID: 1<<32 - 1, GID: 101}}},
			`service "s": uid 4294967295, gid 101: 4294967295 is (uid_t)-1, not an id; want 0 to 4294967294`},
		{"gid (gid_t)-1", Config{Services: []Service{{UID: 101, GID: 1<<32 - 1}}}, `service "s": uid 101, gid 4294967295: 4294967295 is (uid_t)-1, not an id`},
		{"largest ids", Config{Services: []Service{{UID: 1<<32 - 2, GID: 1<<32 - 2}}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.cfg
			if len(c.Services) == 0 {
				c.Services = []Service{{}}
			}
			c.Services[0].Name, c.Services[0].Binary, c.Services[0].Readiness = "s", "/bin/s", ReadyNotify
			b, err := Marshal(&c)
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
