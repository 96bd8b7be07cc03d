package timesync

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/otgate/otgate/internal/atomicfile"
	"github.com/otgate/otgate/internal/bootcfg"
)

// A clock synchronised this boot that the servers say is off by more than
// the panic threshold (a VM snapshot restored, a host that slept) is
// refused: the service will not let whoever answers on the uplink move a
// running gate's clock by hours. Without a way past that, the gate's
// clock stays wrong until a reboot, and TOTP logins fail meanwhile.
// `otgate time step` on the gate (root) is that way: it writes an
// approval file, and the next poll that finds the offset above the panic
// threshold steps the clock once, logging who approved it, and removes
// the file. An approval is good for ApprovalTTL of boot time (the one
// clock the refused offset cannot have moved), and only while the service
// refuses: `otgate time step` writes none otherwise.

// DefaultApproval is where `otgate time step` leaves its approval.
const DefaultApproval = bootcfg.RunDir + "/timesync/step-approved"

// ApprovalTTL is how long an approval may wait for the poll it approves.
const ApprovalTTL = 10 * time.Minute

// bootTime is the time since boot (CLOCK_BOOTTIME: steps of the wall
// clock do not move it, suspend does not stop it).
func bootTime() (time.Duration, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0, fmt.Errorf("clock_gettime(CLOCK_BOOTTIME): %w", err)
	}
	return time.Duration(ts.Nano()), nil
}

// WriteStepApproval approves one step (see above) at path, naming who
// approved it. The file is written atomically, readable by root only.
func WriteStepApproval(path, by string) error {
	bt, err := bootTime()
	if err != nil {
		return err
	}
	content := fmt.Sprintf("boottime-ns %d\nby %s\n", bt.Nanoseconds(), oneLine(by))
	if err := atomicfile.Write(path, []byte(content), 0o600); err != nil {
		return fmt.Errorf("write the step approval: %w", err)
	}
	return nil
}

// oneLine keeps s on its line of a file: control characters become '?'.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}

// takeApproval consumes a valid approval at s.Approval: it returns who
// approved and true, and removes the file. An expired or unreadable one is
// removed and said (once, here); none: "", false.
func (s *Service) takeApproval() (string, bool) {
	if s.Approval == "" {
		return "", false
	}
	b, err := os.ReadFile(s.Approval)
	if errors.Is(err, os.ErrNotExist) {
		return "", false
	}
	defer os.Remove(s.Approval)
	if err != nil {
		s.Logf("timesync: step approval %s unreadable (%v): ignored and removed", s.Approval, err)
		return "", false
	}
	at, by, err := parseApproval(string(b))
	if err != nil {
		s.Logf("timesync: step approval %s: %v: ignored and removed", s.Approval, err)
		return "", false
	}
	now, err := bootTime()
	if err != nil {
		s.Logf("timesync: step approval: %v: ignored and removed", err)
		return "", false
	}
	if age := now - at; age < 0 || age > ApprovalTTL {
		s.Logf("timesync: step approval by %s is %s old (good for %s): ignored and removed", by, age.Round(time.Second), ApprovalTTL)
		return "", false
	}
	return by, true
}

func parseApproval(s string) (time.Duration, string, error) {
	var at time.Duration
	by, haveAt := "", false
	for _, line := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		k, v, _ := strings.Cut(line, " ")
		switch k {
		case "boottime-ns":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return 0, "", fmt.Errorf("bad boottime-ns %q", v)
			}
			at, haveAt = time.Duration(n), true
		case "by":
			by = v
		default:
			return 0, "", fmt.Errorf("unknown line %q", line)
		}
	}
	if !haveAt || by == "" {
		return 0, "", errors.New("want the lines boottime-ns and by")
	}
	return at, by, nil
}
