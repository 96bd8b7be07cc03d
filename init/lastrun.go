package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// How the gate's previous run ended. /perm holds one line about the last
// run (lastRunFile): "running: boot N started T", written durably once
// /perm is mounted, and replaced by "clean: boot N ended T" at a clean
// shutdown once every service has stopped, before the sync and the
// unmount. A boot that finds "running" knows the run before it ended
// otherwise: a power cut, a reset (the watchdog's among them) or a
// kernel panic. It says so on the console and in `otgate status`, and
// counts such ends on /perm (uncleanFile): a gate whose power is cut
// again and again, by accident or to get around something, shows it.
// The services find out for themselves what the cut did to their own
// state (the audit log records its recovery).
const (
	lastRunFile = "init/lastrun"
	uncleanFile = "init/unclean"
)

const (
	runningPrefix = "running: "
	cleanPrefix   = "clean: "
)

// lastRun is what a boot found out about the run before it.
type lastRun struct {
	// Clean: the previous run recorded its clean shutdown. Neither Clean
	// nor Unclean: nothing was recorded (Boot 1: a first boot; else a
	// disk an image before this record ran on, or an unreadable record).
	Clean, Unclean bool
	// Record is what the previous run left ("boot N started T" or
	// "boot N ended T").
	Record string
	// Boot is this boot's count.
	Boot uint64
	// WatchdogReset: the board's watchdog says the last reset was its
	// own (WDIOF_CARDRESET; not every driver can tell).
	WatchdogReset bool
	// Count is how many runs on this /perm ended without a clean
	// shutdown, this one's predecessor included.
	Count uint64
	// Recorded: this run is recorded as running, to be recorded clean at
	// a clean shutdown.
	Recorded bool
}

// describe is the status line's text.
func (l lastRun) describe() string {
	if l.WatchdogReset {
		if l.Unclean {
			return fmt.Sprintf("RESET BY THE WATCHDOG (%s; it was no longer petted); unclean ends on this disk: %d", l.Record, l.Count)
		}
		return "RESET BY THE WATCHDOG (it was no longer petted)"
	}
	switch {
	case l.Unclean:
		return fmt.Sprintf("NO CLEAN SHUTDOWN (%s; power cut, reset or crash); unclean ends on this disk: %d", l.Record, l.Count)
	case l.Clean && l.Count > 0:
		return fmt.Sprintf("clean shutdown (%s); unclean ends on this disk before: %d", l.Record, l.Count)
	case l.Clean:
		return fmt.Sprintf("clean shutdown (%s)", l.Record)
	case l.Boot <= 1:
		return "none (first boot on this disk)"
	}
	return "not recorded"
}

// checkLastRun reads how the run before this one ended from the /perm
// directory perm and records this run there as running (boot is this
// boot's count, now its start). An unreadable counter or record is an
// error and the counter is left as it is; this run is recorded all the
// same.
func checkLastRun(perm string, boot uint64, now time.Time) (lastRun, error) {
	l := lastRun{Boot: boot}
	var errs []error
	record := filepath.Join(perm, lastRunFile)
	counter := filepath.Join(perm, uncleanFile)
	n, err := readCount(counter)
	if err != nil {
		errs = append(errs, err)
	}
	l.Count = n
	b, err := os.ReadFile(record)
	line := strings.TrimSpace(string(b))
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		errs = append(errs, err)
	case strings.HasPrefix(line, runningPrefix):
		l.Unclean, l.Record = true, strings.TrimPrefix(line, runningPrefix)
		if len(errs) == 0 {
			if l.Count, err = countBoot(counter); err != nil {
				errs = append(errs, fmt.Errorf("count the unclean end: %w", err))
			}
		}
	case strings.HasPrefix(line, cleanPrefix):
		l.Clean, l.Record = true, strings.TrimPrefix(line, cleanPrefix)
	default:
		errs = append(errs, fmt.Errorf("%s: not a record of a run: %.64q", record, line))
	}
	text := fmt.Sprintf("%sboot %d started %s\n", runningPrefix, boot, now.UTC().Format(time.RFC3339))
	if err := writeFileAtomic(record, []byte(text), 0o644); err != nil {
		errs = append(errs, fmt.Errorf("record this run: %w (its end will not be known)", err))
	} else {
		l.Recorded = true
	}
	return l, errors.Join(errs...)
}

// markCleanShutdown records in the /perm directory perm that this run
// (boot) ended cleanly at now, durably.
func markCleanShutdown(perm string, boot uint64, now time.Time) error {
	text := fmt.Sprintf("%sboot %d ended %s\n", cleanPrefix, boot, now.UTC().Format(time.RFC3339))
	return writeFileAtomic(filepath.Join(perm, lastRunFile), []byte(text), 0o644)
}

// noteLastRun checks how the previous run ended, logs it when it was not
// clean, and marks this run on /perm.
func (in *initProc) noteLastRun() {
	l, err := checkLastRun(in.path("/perm"), in.perm.Boots, time.Now())
	in.lastRun = l
	if err != nil {
		in.log.Printf("/perm: previous run: %v", err)
	}
	switch {
	case l.Unclean:
		in.log.Printf("PREVIOUS RUN DID NOT SHUT DOWN CLEANLY (%s): a power cut, a reset or a crash (unclean ends on this disk: %d)", l.Record, l.Count)
	case l.Clean:
		in.log.Printf("previous run: %s", l.describe())
	}
}

// noteCleanShutdown records the clean shutdown of this run at its end
// (every service stopped), so that the next boot knows.
func (in *initProc) noteCleanShutdown() {
	if !in.lastRun.Recorded {
		return
	}
	if err := markCleanShutdown(in.path("/perm"), in.perm.Boots, time.Now()); err != nil {
		in.log.Printf("/perm: could not record the clean shutdown: %v (the next boot will count this run as unclean)", err)
	}
}

// previousRun is the status's account of the previous run: empty when
// /perm is a tmpfs (nothing is known).
func (in *initProc) previousRun() string {
	if in.perm.FSType == "tmpfs" || in.perm.FSType == "" {
		if in.lastRun.WatchdogReset {
			return in.lastRun.describe()
		}
		return ""
	}
	return in.lastRun.describe()
}

// noteWatchdogReset asks the watchdog f (just opened) whether the board's
// last reset was its own, and says so: the run before stopped petting it
// (a critical service unhealthy, or init hung). Drivers that cannot tell
// (softdog) answer 0.
func (in *initProc) noteWatchdogReset(f *os.File, dev string) {
	var flags int32
	if err := ioctlOn(f)(unix.WDIOC_GETBOOTSTATUS, &flags); err != nil {
		return // not supported: nothing known
	}
	if flags&unix.WDIOF_CARDRESET != 0 {
		in.lastRun.WatchdogReset = true
		in.log.Printf("watchdog: %s reset the board: the previous run stopped petting it (a critical service unhealthy, or init hung)", dev)
	}
}
