package main

import (
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// setHostname sets the kernel host name.
func setHostname(name string) error {
	if name == "" {
		return nil
	}
	if err := unix.Sethostname([]byte(name)); err != nil {
		return fmt.Errorf("sethostname %q: %w", name, err)
	}
	return nil
}

// loopbackUp sets IFF_UP on "lo" with the classic ioctl (no netlink
// needed for one flag).
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("loopback: socket: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return fmt.Errorf("loopback: %w", err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("loopback: get flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("loopback: set up: %w", err)
	}
	return nil
}

// waitRNG blocks until the kernel's random pool is initialised (getrandom
// without GRND_NONBLOCK) and returns how long that took.
func waitRNG() (time.Duration, error) {
	start := time.Now()
	var b [1]byte
	for {
		_, err := unix.Getrandom(b[:], 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return time.Since(start), fmt.Errorf("getrandom: %w", err)
		}
		return time.Since(start), nil
	}
}

// secs formats a duration as seconds with two decimals: "0.12s".
func secs(d time.Duration) string {
	return fmt.Sprintf("%.2fs", d.Seconds())
}

// short formats a back-off or window: "250ms", "1s", "30s", "2m0s".
func short(d time.Duration) string {
	switch {
	case d < time.Second && d%time.Millisecond == 0:
		return fmt.Sprintf("%dms", d/time.Millisecond)
	case d < time.Minute && d%time.Second == 0:
		return fmt.Sprintf("%ds", d/time.Second)
	}
	return d.String()
}
