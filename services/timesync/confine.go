package timesync

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/otgate/otgate/internal/sandbox"
)

// EtcDir is what the service reads of /etc: Go's resolver (the NTS and
// NTP servers' names) reads resolv.conf, hosts and nsswitch.conf (and
// services, for a port given by name), again when they change.
const EtcDir = "/etc"

// Confinement makes s's file paths absolute (a relative flag), creates
// the directories the service would create later and a rule must name
// now, and returns the files the service needs for the rest of its life
// (sandbox.RestrictFiles). A path left empty ("": none) gets no rule.
//
//   - Read, the policy's directory (PolicyPath, read at every poll): the
//     policy is replaced by a rename into it (site.Store), a new file
//     each time, which a rule on the file would not follow. It must
//     exist (the "policy" service makes it before any service that
//     reads the policy starts).
//   - Write, the clock file's directory (created 0700 if missing, as
//     WriteClockFile would): the floor is written as a temporary file
//     renamed over ClockFile, and loadFloor removes a write's leftovers.
//   - Write, the marker's directory (created 0755 if missing, as mark
//     would) and the approval's (created too): the marker is written by
//     a rename, the approval read and removed. On the device both are in
//     the service's own /run/otgate/timesync.
//   - Read, the hardware clock (RTC), if the board has one: ReadRTC and
//     WriteRTC open it read-only and set it by ioctl (RTC_SET_TIME needs
//     CAP_SYS_TIME, not a writable descriptor), which Landlock version 2
//     does not restrict. ReadIfExists: a board or VM without one still
//     runs (said once at the first write, as before); a device that
//     appears after the start is not reachable.
//   - Read, /etc (EtcDir): the resolver's files. The directory, not the
//     files: netconf may create /etc/resolv.conf after the start, or
//     replace it by a rename.
//
// Nothing else: the NTS certificates are verified against the site
// policy's CA only (never a system bundle: no /etc/ssl), the netconf
// socket is connected to (no right needed), and the caller loads the
// time zone (time.Now().Zone()) before it confines.
func (s *Service) Confinement() (sandbox.Files, error) {
	var f sandbox.Files
	if err := sandbox.Absolute(&s.PolicyPath, &s.RTC, &s.Marker, &s.Approval, &s.ClockFile); err != nil {
		return f, fmt.Errorf("timesync: %w", err)
	}
	var errs []error
	writeDir := func(file string, perm os.FileMode) {
		if file == "" {
			return
		}
		dir := filepath.Dir(file)
		if err := os.MkdirAll(dir, perm); err != nil {
			errs = append(errs, fmt.Errorf("timesync: %w", err))
			return
		}
		f.AddWrite(dir)
	}
	writeDir(s.ClockFile, 0o700)
	writeDir(s.Marker, 0o755)
	writeDir(s.Approval, 0o755)
	if s.PolicyPath != "" {
		f.AddRead(filepath.Dir(s.PolicyPath))
	}
	f.AddRead(EtcDir)
	if s.RTC != "" {
		f.AddReadIfExists(s.RTC)
	}
	return f, errors.Join(errs...)
}
