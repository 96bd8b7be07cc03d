package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"
)

// How long init waits for the /perm disk to appear. Block devices appear
// as their drivers probe them, after init has loaded the modules: a
// virtio disk at once, an NVMe or SATA SSD within a second or two, but a
// spinning SATA disk, a USB disk (enumeration, then usb-storage's settle
// delay) or a disk behind a slow controller can take ten seconds and
// more. A disk that is there is used the moment it appears; the wait is
// only the time a unit without its disk takes to fall back to the tmpfs.
// systemd gives a device unit 90 s, dracut the root disk minutes; /perm
// has a fallback and a unit without it is broken anyway, so 30 s. The
// kernel command line's otgate.perm_wait= (a board's Cmdline, or the boot
// loader entry of one slow unit) sets it between permWaitMin (the wait
// before it was configurable: never less) and permWaitMax.
const (
	permWaitParam   = "otgate.perm_wait"
	defaultPermWait = 30 * time.Second
	permWaitMin     = 5 * time.Second
	permWaitMax     = 10 * time.Minute
	// permWaitQuiet: a disk that appears within this is not worth a
	// line in the log; one that takes longer is, with the time it took.
	permWaitQuiet = time.Second
	// permWaitNote is how often a long wait says it is still waiting.
	permWaitNote = 10 * time.Second
	// latePermWatch is how long after giving up init still looks for the
	// disk, to tell the operator it came too late.
	latePermWatch = 10 * time.Minute
)

// permRetryDelays are the pauses between the tries of a read or mount of
// the /perm disk that failed (3 tries, 3 s at most).
var permRetryDelays = []time.Duration{time.Second, 2 * time.Second}

// errPermAmbiguous: more than one partition carries the /perm label;
// waiting longer cannot help.
var errPermAmbiguous = errors.New("refusing to guess which is /perm")

// permWait is the wait the kernel command line asks for (otgate.perm_wait=,
// a duration such as 60s or 2m, or seconds), else defaultPermWait. A bad
// value is an error naming it, and the default is used.
func permWait(cmdline map[string]string) (time.Duration, error) {
	v, ok := cmdline[permWaitParam]
	if !ok {
		return defaultPermWait, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		n, nerr := strconv.ParseUint(v, 10, 16)
		if nerr != nil {
			return defaultPermWait, fmt.Errorf("%s=%q is not a duration (60s, 2m, or seconds); waiting the default %s", permWaitParam, v, short(defaultPermWait))
		}
		d = time.Duration(n) * time.Second
	}
	if d < permWaitMin || d > permWaitMax {
		return defaultPermWait, fmt.Errorf("%s=%q is outside %s to %s; waiting the default %s", permWaitParam, v, short(permWaitMin), short(permWaitMax), short(defaultPermWait))
	}
	return d, nil
}

// permNotFoundError: the /perm disk did not appear within the wait.
type permNotFoundError struct {
	spec string
	wait time.Duration
	err  error
}

func (e *permNotFoundError) Error() string {
	return fmt.Sprintf("device %s: %v (waited %s)", e.spec, e.err, short(e.wait))
}

func (e *permNotFoundError) Unwrap() error { return e.err }

// findPermDevice resolves devSpec and checks that its device node exists.
func findPermDevice(devSpec, sysDir, devDir string) (string, error) {
	dev, err := resolvePermDevice(devSpec, sysDir, devDir)
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(dev); err != nil {
		return "", err
	}
	return dev, nil
}

// waitPermDevice waits up to wait for devSpec to appear and returns its
// device node. A long wait is logged, with the time the disk took.
func waitPermDevice(log *logger, devSpec, sysDir, devDir string, wait time.Duration) (string, error) {
	start := time.Now()
	deadline := start.Add(wait)
	note := start.Add(permWaitQuiet)
	logged := false
	for {
		dev, err := findPermDevice(devSpec, sysDir, devDir)
		if err == nil {
			if logged {
				log.Printf("/perm: %s appeared as %s after %s", devSpec, dev, secs(time.Since(start)))
			}
			return dev, nil
		}
		if errors.Is(err, errPermAmbiguous) {
			return "", err
		}
		now := time.Now()
		if now.After(deadline) {
			return "", &permNotFoundError{spec: devSpec, wait: wait, err: err}
		}
		if now.After(note) {
			if !logged {
				log.Printf("/perm: waiting up to %s for %s (%v)", short(wait), devSpec, err)
			} else {
				log.Printf("/perm: still waiting for %s (%s of %s)", devSpec, secs(now.Sub(start)), short(wait))
			}
			logged = true
			note = note.Add(permWaitNote)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// watchLatePerm looks for the /perm disk for watchFor after init gave up
// waiting for it, and says so loudly if it comes: /perm stays the tmpfs
// (the services already keep their state there; mounting over it would
// hide that and mix two states), but the operator learns that the wait
// was too short for this disk and what to set.
func watchLatePerm(log *logger, devSpec, sysDir, devDir string, wait, watchFor time.Duration) {
	gaveUp := time.Now()
	for time.Since(gaveUp) < watchFor {
		time.Sleep(time.Second)
		if dev, err := findPermDevice(devSpec, sysDir, devDir); err == nil {
			log.Printf("WARNING: /perm: %s appeared as %s, %s after init stopped waiting for it (%s): /perm stays a tmpfs until the next boot; if this disk is always this slow, set %s= longer on the kernel command line",
				devSpec, dev, secs(time.Since(gaveUp)), short(wait), permWaitParam)
			return
		}
	}
}
