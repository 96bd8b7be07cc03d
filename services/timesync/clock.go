package timesync

import (
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Clock is the clock the service reads and corrects. SystemClock is the
// kernel's; tests inject their own, so that no test ever changes the
// host's clock.
type Clock interface {
	// Now is the clock's current time (what an NTP query compares with
	// the server's).
	Now() time.Time
	// Step jumps the clock by d at once.
	Step(d time.Duration) error
	// Slew corrects the clock by d gradually; poll is the current poll
	// interval (the PLL's time constant follows it).
	Slew(d, poll time.Duration) error
}

// SystemClock is the kernel's CLOCK_REALTIME. Changing it needs
// CAP_SYS_TIME.
type SystemClock struct{}

// Now is time.Now.
func (SystemClock) Now() time.Time { return time.Now() }

// Step adds d to CLOCK_REALTIME in one call (adjtimex ADJ_SETOFFSET:
// relative, so no time is lost between reading the clock and setting
// it), after cancelling any slew in progress; kernels without
// ADJ_SETOFFSET get clock_settime. CLOCK_MONOTONIC, and so every Go
// timer, is not affected.
func (SystemClock) Step(d time.Duration) error {
	cancel := unix.Timex{Modes: unix.ADJ_OFFSET_SINGLESHOT}
	_, _ = unix.Adjtimex(&cancel)
	sec, nsec := int64(d/time.Second), int64(d%time.Second)
	if nsec < 0 {
		sec, nsec = sec-1, nsec+int64(time.Second)
	}
	tx := unix.Timex{Modes: unix.ADJ_SETOFFSET | unix.ADJ_NANO, Time: unix.Timeval{Sec: sec, Usec: nsec}}
	_, err := unix.Adjtimex(&tx)
	if errors.Is(err, unix.EINVAL) {
		var ts unix.Timespec
		if err = unix.ClockGettime(unix.CLOCK_REALTIME, &ts); err == nil {
			ts = unix.NsecToTimespec(ts.Nano() + d.Nanoseconds())
			err = unix.ClockSettime(unix.CLOCK_REALTIME, &ts)
		}
	}
	if err != nil {
		return fmt.Errorf("step the clock by %s: %w", signed(d), err)
	}
	return nil
}

// pllMax is the largest offset the kernel's PLL takes (MAXPHASE).
const pllMax = 500 * time.Millisecond

// Slew hands an offset up to 0.5 s to the kernel's PLL (ADJ_OFFSET with
// STA_PLL: it corrects the offset over a time constant that follows the
// poll interval and learns the frequency error; the kernel then also
// counts the clock as synchronised, STA_UNSYNC cleared). A larger one is
// slewed at the kernel's fixed 500 ppm (ADJ_OFFSET_SINGLESHOT, the old
// adjtime). Either replaces a single-shot slew still in progress: the
// new offset was measured with it partly done.
func (SystemClock) Slew(d, poll time.Duration) error {
	if absDur(d) > pllMax {
		tx := unix.Timex{Modes: unix.ADJ_OFFSET_SINGLESHOT, Offset: d.Microseconds()}
		if _, err := unix.Adjtimex(&tx); err != nil {
			return fmt.Errorf("slew the clock by %s: %w", signed(d), err)
		}
		return nil
	}
	cancel := unix.Timex{Modes: unix.ADJ_OFFSET_SINGLESHOT}
	_, _ = unix.Adjtimex(&cancel)
	tc := int64(0) // log2(poll) - 4, as systemd-timesyncd: 2 at 64 s, 6 at 1024 s
	for p := poll / time.Second; p > 16; p /= 2 {
		tc++
	}
	tx := unix.Timex{
		Modes:    unix.ADJ_OFFSET | unix.ADJ_NANO | unix.ADJ_STATUS | unix.ADJ_TIMECONST | unix.ADJ_MAXERROR | unix.ADJ_ESTERROR,
		Offset:   d.Nanoseconds(),
		Status:   unix.STA_PLL,
		Constant: tc,
		Maxerror: absDur(d).Microseconds() + 10000,
		Esterror: absDur(d).Microseconds(),
	}
	if _, err := unix.Adjtimex(&tx); err != nil {
		return fmt.Errorf("slew the clock by %s: %w", signed(d), err)
	}
	return nil
}

// DefaultRTC is the hardware clock's device.
const DefaultRTC = "/dev/rtc0"

// WriteRTC sets the hardware clock at path to t in UTC (RTC_SET_TIME,
// whole seconds). A missing device is os.ErrNotExist.
func WriteRTC(path string, t time.Time) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	u := t.UTC()
	rt := unix.RTCTime{
		Sec: int32(u.Second()), Min: int32(u.Minute()), Hour: int32(u.Hour()),
		Mday: int32(u.Day()), Mon: int32(u.Month()) - 1, Year: int32(u.Year()) - 1900,
		Wday: int32(u.Weekday()), Yday: int32(u.YearDay()) - 1,
	}
	if err := unix.IoctlSetRTCTime(int(f.Fd()), &rt); err != nil {
		return fmt.Errorf("%s: RTC_SET_TIME: %w", path, err)
	}
	return nil
}

// ReadRTC reads the hardware clock at path as UTC (RTC_RD_TIME).
func ReadRTC(path string) (time.Time, error) {
	f, err := os.Open(path)
	if err != nil {
		return time.Time{}, err
	}
	defer f.Close()
	rt, err := unix.IoctlGetRTCTime(int(f.Fd()))
	if err != nil {
		return time.Time{}, fmt.Errorf("%s: RTC_RD_TIME: %w", path, err)
	}
	return time.Date(int(rt.Year)+1900, time.Month(rt.Mon+1), int(rt.Mday), int(rt.Hour), int(rt.Min), int(rt.Sec), 0, time.UTC), nil
}
