package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// wdCore answers the watchdog ioctls the way the kernel's watchdog core
// does (drivers/watchdog/watchdog_dev.c): WDIOC_SETTIMEOUT refuses a value
// outside the driver's range (EINVAL) or a driver without a settable
// timeout (EOPNOTSUPP), lets the driver clamp it, and hands back the
// timeout the device has; WDIOC_GETTIMEOUT says EOPNOTSUPP when the
// timeout is unknown (0). This host has no watchdog driver (no softdog
// module for its kernel, no /dev/watchdog), and a real one would reset
// the shared machine if a test let it fire: the decision logic is tested
// on this model, the real ioctl on a file below (it refuses both).
type wdCore struct {
	timeout, min, max, clamp int32
	fixed                    bool // no WDIOF_SETTIMEOUT
	sets                     []int32
}

func (c *wdCore) ioctl(req uint, secs *int32) error {
	switch req {
	case unix.WDIOC_SETTIMEOUT:
		c.sets = append(c.sets, *secs)
		if c.fixed {
			return unix.EOPNOTSUPP
		}
		if *secs < c.min || *secs > c.max {
			return unix.EINVAL
		}
		c.timeout = *secs
		if c.clamp > 0 && c.timeout > c.clamp {
			c.timeout = c.clamp
		}
	case unix.WDIOC_GETTIMEOUT:
	default:
		return unix.ENOTTY
	}
	if c.timeout == 0 {
		return unix.EOPNOTSUPP
	}
	*secs = c.timeout
	return nil
}

// A watchdog gets the boot config's timeout rounded up to a whole second
// (before, a timeout under a second was never set: the device kept its
// own, 60 s for softdog, while init reported the configured one), and
// init takes the timeout the device reports it has: the clamped value, or
// when the device refuses, the one it kept (before, init reported and
// petted by the refused value, so a device with a shorter timeout reset
// a healthy board), or 0 when it does not say.
func TestWatchdogTimeoutIsWhatTheDeviceTook(t *testing.T) {
	for _, tc := range []struct {
		name string
		dev  wdCore
		want time.Duration
		set  int32
		took time.Duration
		err  string
	}{
		{"whole seconds", wdCore{timeout: 60, min: 1, max: 65535}, 10 * time.Second, 10, 10 * time.Second, ""},
		{"under a second", wdCore{timeout: 60, min: 1, max: 65535}, 600 * time.Millisecond, 1, time.Second, ""},
		{"a fraction", wdCore{timeout: 60, min: 1, max: 65535}, 1500 * time.Millisecond, 2, 2 * time.Second, ""},
		{"clamped", wdCore{timeout: 30, min: 1, max: 65535, clamp: 5}, 10 * time.Second, 10, 5 * time.Second, ""},
		{"refused, keeps its own", wdCore{timeout: 60, min: 1, max: 5}, 10 * time.Second, 10, 60 * time.Second,
			"set timeout 10s: invalid argument; the device keeps its timeout of 60s"},
		{"fixed timeout", wdCore{timeout: 20, fixed: true}, 10 * time.Second, 10, 20 * time.Second,
			"set timeout 10s: operation not supported; the device keeps its timeout of 20s"},
		{"refused, timeout unknown", wdCore{fixed: true}, 10 * time.Second, 10, 0,
			"set timeout 10s: operation not supported; its own timeout is unknown (get timeout: operation not supported)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dev := tc.dev
			took, err := programWatchdog(dev.ioctl, tc.want)
			if len(dev.sets) != 1 || dev.sets[0] != tc.set {
				t.Errorf("WDIOC_SETTIMEOUT with %v, want once with %d", dev.sets, tc.set)
			}
			if took != tc.took {
				t.Errorf("took %s, want %s", took, tc.took)
			}
			if tc.err == "" && err != nil || tc.err != "" && (err == nil || err.Error() != tc.err) {
				t.Errorf("error %v, want %q", err, tc.err)
			}
		})
	}
}

// The real ioctls on something that is not a watchdog (a file: ENOTTY for
// both) leave the timeout unknown, and say so: init must not report or
// pet by the configured timeout, whatever it is. Before, the configured
// timeout came back (and under a second, no ioctl was even tried).
func TestOpenWatchdogNotAWatchdog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "watchdog")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, want := range []time.Duration{10 * time.Second, 600 * time.Millisecond} {
		f, took, err := openWatchdog(path, want)
		if f == nil {
			t.Fatalf("%s: not opened: %v", want, err)
		}
		f.Close()
		if took != 0 || err == nil || !strings.Contains(err.Error(), "inappropriate ioctl for device; its own timeout is unknown") {
			t.Errorf("%s: took %s, %v; want 0 and an error saying the timeout is unknown", want, took, err)
		}
	}
	// Unknown: init pets as often as the shortest timeout needs.
	if wd := newWatchdog(newLogger(), nil, path, 0, nil); wd.interval != unknownTimeoutInterval {
		t.Errorf("interval %s for an unknown timeout, want %s", wd.interval, unknownTimeoutInterval)
	}
	for _, tc := range []struct {
		took, asked time.Duration
		want        string
	}{
		{10 * time.Second, 10 * time.Second, "10s"},
		{time.Second, 600 * time.Millisecond, "1s (asked 600ms)"},
		{0, 10 * time.Second, "unknown (asked 10s)"},
	} {
		if got := timeoutText(tc.took, tc.asked); got != tc.want {
			t.Errorf("timeoutText(%s, %s) = %q, want %q", tc.took, tc.asked, got, tc.want)
		}
	}
}
