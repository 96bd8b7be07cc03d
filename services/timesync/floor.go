package timesync

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/otgate/otgate/internal/atomicfile"
)

// The clock floor: the last time the gate knew was right, as
// systemd-timesyncd's clock file. A board with a dead RTC battery (or a
// VM without an RTC) boots in 1970 or 2000, and until a server answers
// (the uplink may be down for hours in a plant) every certificate would
// be "not yet valid", time windows wrong and the audit log's timestamps
// would go back in time. So:
//
//   - The service saves the clock's time to ClockFile (on /perm) after
//     the first sync of a boot and after every step, and then at most
//     every ClockFileInterval (an hour: flash) while synchronised.
//   - At start, before the first sync of the boot, the floor is the
//     file's time, or the build floor (BuildFloor) when the file is
//     missing or damaged, or when the build floor is later. A clock
//     behind the floor is stepped forward to it, loudly.
//   - Before the first sync the floor also guards NTS's first-boot
//     exception (the certificates' validity times are not compared
//     with a clock that may be years off): a certificate chain that
//     expired before the guard is refused at the key exchange (it had
//     expired before the last time the gate knew), and a server, NTS or
//     plain NTP, whose time is before the guard is not used. The guard
//     is the floor only when an NTS sync wrote the file; a file a plain
//     NTP sync wrote only sets the clock forward at start, and the guard
//     is the build floor: someone on the uplink who forged a plain-NTP
//     time far ahead must not make it a floor that outlives the reboot
//     (the next boot's first sync steps back to the servers' time, as it
//     did before there was a file). An administrator can approve one
//     step below the guard (`otgate time step`, approval.go), which
//     lifts it for that boot's first sync; the file then gets the new
//     time.
//   - Bound: a file's time more than MaxFloorAhead after BuildFloor is
//     ignored and said (someone with the disk, or a damaged file, must
//     not push the clock decades ahead); below that, a floor that is
//     wrong (too far ahead) makes every server refused until an
//     administrator approves the step back (`otgate time step`), or
//     removes the file and restarts the service. The file is not
//     authenticated: whoever can write /perm can move a booting gate's
//     clock forward, up to that bound, but not back.

// ClockFileVersion is the first line of a clock file.
const ClockFileVersion = "otgate-timesync-clock 1"

// DefaultClockFile is where the floor is kept (persistent storage).
const DefaultClockFile = "/perm/timesync/clock"

// DefaultClockFileInterval is how often, at most, the clock file is
// rewritten while synchronised.
const DefaultClockFileInterval = time.Hour

// BuildFloor is no later than this source was built: the floor when
// there is no clock file. Raise it now and then (a release): it must not
// be in the future (a test checks it against the clock).
var BuildFloor = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)

// MaxFloorAhead bounds a clock file's time: more than this after
// BuildFloor and it is ignored (a gate runs one image for years, not
// decades; past that the build floor still holds).
const MaxFloorAhead = 20 * 365 * 24 * time.Hour

// errBelowFloor marks a server refused because of the floor.
var errBelowFloor = errors.New("below the clock floor")

// ReadClockFile reads a clock file: the saved time and where it came
// from.
func ReadClockFile(path string) (time.Time, string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return time.Time{}, "", err
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines) == 0 || lines[0] != ClockFileVersion {
		return time.Time{}, "", fmt.Errorf("not a clock file (want the first line %q)", ClockFileVersion)
	}
	var t time.Time
	src := ""
	for _, l := range lines[1:] {
		k, v, _ := strings.Cut(l, " ")
		switch k {
		case "time":
			if t, err = time.Parse(time.RFC3339Nano, v); err != nil {
				return time.Time{}, "", fmt.Errorf("bad time %q", v)
			}
		case "source":
			src = v
		default:
			return time.Time{}, "", fmt.Errorf("unknown line %q", l)
		}
	}
	if t.IsZero() {
		return time.Time{}, "", errors.New("no time line")
	}
	return t.UTC(), src, nil
}

// WriteClockFile saves t and its source to path atomically (temporary
// file, fsync, rename, fsync of the directory).
func WriteClockFile(path string, t time.Time, source string) error {
	content := fmt.Sprintf("%s\ntime %s\nsource %s\n", ClockFileVersion, t.UTC().Format(time.RFC3339Nano), oneLine(source))
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return atomicfile.Write(path, []byte(content), 0o644)
}

// loadFloor sets the floor from the clock file and the build floor, and
// steps a clock that is behind it forward (at start, not synchronised
// this boot).
func (s *Service) loadFloor() {
	if s.ClockFile == "" {
		return
	}
	s.floor, s.floorFrom = BuildFloor, "the build floor"
	s.guard, s.guardFrom = BuildFloor, "the build floor"
	// A power cut during a write leaves a temporary file beside it (the
	// file itself is the old or the new one): removed, or they pile up.
	if err := atomicfile.Clean(s.ClockFile); err != nil {
		s.Logf("timesync: clock file %s: leftovers of an interrupted write: %v", s.ClockFile, err)
	}
	t, src, err := ReadClockFile(s.ClockFile)
	switch {
	case errors.Is(err, os.ErrNotExist):
		s.Logf("timesync: no clock file %s yet: the floor is the build floor %s", s.ClockFile, stamp(BuildFloor))
	case err != nil:
		s.Logf("timesync: clock file %s damaged: %v: ignored (the floor is the build floor %s)", s.ClockFile, err, stamp(BuildFloor))
	case t.After(BuildFloor.Add(MaxFloorAhead)):
		s.Logf("timesync: clock file %s says %s, more than %d years after the build floor %s: IGNORED (damaged or planted?; the floor is the build floor)",
			s.ClockFile, stamp(t), int(MaxFloorAhead.Hours()/24/365), stamp(BuildFloor))
	case t.After(BuildFloor):
		s.floor, s.floorFrom = t, fmt.Sprintf("the last known time (%s, %s)", s.ClockFile, src)
		if strings.HasPrefix(src, "synced from nts ") {
			s.guard, s.guardFrom = s.floor, s.floorFrom
		}
	}
	if now := s.Clock.Now(); now.Before(s.floor) {
		if err := s.Clock.Step(s.floor.Sub(now)); err != nil {
			s.Logf("timesync: clock %s behind %s %s: not set: %v", stamp(now), s.floorFrom, stamp(s.floor), err)
			return
		}
		s.floorSet = fmt.Sprintf("%s %s", s.floorFrom, stamp(s.floor))
		s.Logf("timesync: clock behind %s: %s -> %s: set to it (not synchronised yet; the clock never goes back past it without an approval)",
			s.floorFrom, stamp(now), stamp(s.Clock.Now()))
	}
}

// floorNote is what the status says, until the first sync, of a clock
// set forward to the floor at start ("" if it was not).
func (s *Service) floorNote() string {
	if s.synced || s.floorSet == "" {
		return ""
	}
	return "; the clock was set forward at start to " + s.floorSet
}

// saveFloor writes the clock file after the first sync or a step (now),
// then every ClockFileInterval while synchronised. It says whether it
// wrote it.
func (s *Service) saveFloor(now bool, used string) bool {
	if s.ClockFile == "" {
		return false
	}
	if !now && !s.floorAt.IsZero() && time.Since(s.floorAt) < s.ClockFileInterval {
		return false
	}
	s.floorUsed = used
	t := s.Clock.Now()
	s.floorAt = time.Now()
	if err := WriteClockFile(s.ClockFile, t, "synced from "+used); err != nil {
		s.Logf("timesync: clock file: %v (the next boot's floor is older)", err)
		return false
	}
	s.floor, s.floorFrom = t, "the last known time ("+s.ClockFile+")"
	return true
}

// Stop saves the clock to the clock file if it was synchronised this
// boot: after a clean stop (a shutdown) the next boot's floor is the time
// of the stop, not up to ClockFileInterval before it.
func (s *Service) Stop() {
	s.init()
	if !s.synced || s.ClockFile == "" {
		return
	}
	used := strings.TrimSuffix(s.floorUsed, " (saved at stop)")
	if used == "" {
		used = "earlier this boot"
	}
	if s.saveFloor(true, used+" (saved at stop)") {
		s.Logf("timesync: clock file %s: saved %s at stop", s.ClockFile, stamp(s.floor))
	}
}

// belowFloor drops, before the first sync of the boot, the samples whose
// time is before the floor (a server that would set the clock back past
// the last time the gate knew was right).
func (s *Service) belowFloor(samples []Sample) {
	if s.synced || s.guard.IsZero() {
		return
	}
	now := s.Clock.Now()
	for i := range samples {
		smp := &samples[i]
		if smp.Err != nil {
			continue
		}
		if t := now.Add(smp.Offset); t.Before(s.guard) {
			smp.Err = fmt.Errorf("%w: its time %s is before %s %s: not used (`otgate time step` on the gate approves one step below it)",
				errBelowFloor, stamp(t), s.guardFrom, stamp(s.guard))
			s.floorHit.Store(true)
		}
	}
}

// certBelowFloor says, before the first sync, why a verified chain
// valid until notAfter is refused: it expired before the floor.
func (s *Service) certBelowFloor(notAfter time.Time) error {
	if s.synced || s.guard.IsZero() || !notAfter.Before(s.guard) {
		return nil
	}
	s.floorHit.Store(true)
	return &certError{fmt.Errorf("%w: the chain expired at %s, before %s %s (an old certificate cannot set the clock back)",
		errBelowFloor, stamp(notAfter), s.guardFrom, stamp(s.guard))}
}

// liftFloor takes an administrator's approval of a step below the
// floor, after a poll refused servers because of it: the floor is lifted
// for this boot's first sync, and the key exchanges it refused are tried
// again at once.
func (s *Service) liftFloor() {
	if s.synced || s.guard.IsZero() || !s.floorRefused {
		return
	}
	by, ok := s.takeApproval()
	if !ok {
		return
	}
	s.Logf("timesync: the floor %s (%s) is LIFTED for this boot's first sync, approved by %s (otgate time step): the servers may set the clock back past it",
		stamp(s.guard), s.guardFrom, by)
	s.guard, s.floorRefused = time.Time{}, false
	for _, p := range s.peers {
		p.session, p.backoff, p.nextKE = nil, 0, time.Time{}
	}
}
