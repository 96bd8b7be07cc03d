package timesync

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A boot with the clock in 2000 (a dead RTC battery) and no server
// answering: the clock is stepped forward to the time the previous run
// saved, and said; nothing is saved while not synchronised. A damaged
// clock file, and one dated beyond the bound, are said and ignored:
// the floor is then the build floor.
func TestBootStepsToTheSavedFloor(t *testing.T) {
	l := newLab(t)
	now := time.Now()
	lg := newLogs(t)
	file := filepath.Join(t.TempDir(), "timesync", "clock")
	saved := now.Add(-time.Hour).UTC()
	if err := WriteClockFile(file, saved, "synced from nts 192.0.2.1:4460"); err != nil {
		t.Fatal(err)
	}
	// A write a power cut interrupted left its temporary file.
	leftover := filepath.Join(filepath.Dir(file), ".tmp-clock-123")
	if err := os.WriteFile(leftover, []byte("otgate-timesync-cl"), 0o644); err != nil {
		t.Fatal(err)
	}
	y2k := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC).Sub(now)
	c := &testClock{}
	c.set(y2k)
	svc := newService(t, l, c, lg, "", "192.0.2.9") // nothing answers there
	svc.ClockFile = file
	r := svc.Poll(context.Background())
	if r.Action != ActionFailed {
		t.Fatalf("no server: %s (%v)", r.Action, r.Err)
	}
	if steps, _ := c.counts(); steps != 1 || !near(c.skew, -time.Hour, time.Second) {
		t.Fatalf("clock off by %s after %d steps; want stepped to the saved time (an hour ago)", c.skew, steps)
	}
	if lg.match(`^timesync: clock behind the last known time \(`+file+`, synced from nts 192\.0\.2\.1:4460\): 2000-01-01T00:00:0\d\.\d+Z -> `+saved.Format("2006-01-02T15:04:05")+`\.\d+Z: set to it`) != 1 {
		t.Error("the step to the floor is not logged with the old and new time and where the floor came from")
	}
	if st := lg.lastStatus(); !strings.HasPrefix(st, "not synchronised: ") ||
		!strings.HasSuffix(st, "; the clock was set forward at start to the last known time ("+file+", synced from nts 192.0.2.1:4460) "+stamp(saved)) {
		t.Errorf("status %q does not say the clock was set to the floor", st)
	}
	if _, err := os.Stat(leftover); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the leftover of an interrupted write is still there: %v", err)
	}
	svc.Stop() // not synchronised: nothing to save
	if got, _, err := ReadClockFile(file); err != nil || !got.Equal(saved) {
		t.Errorf("the clock file was changed while not synchronised: %s, %v", got, err)
	}

	// A damaged file, and one in 2100: ignored, the build floor holds.
	for name, content := range map[string]string{
		"damaged": ClockFileVersion + "\ntime 2031-02-3\x00\n",
		"2100":    ClockFileVersion + "\ntime 2100-01-01T00:00:00Z\nsource someone with the disk\n",
	} {
		if err := os.WriteFile(file, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		c := &testClock{}
		c.set(y2k)
		svc := newService(t, l, c, lg, "")
		svc.ClockFile = file
		svc.Poll(context.Background())
		if !near(c.skew, BuildFloor.Sub(now), time.Second) {
			t.Errorf("%s clock file: clock off by %s; want stepped to the build floor %s", name, c.skew, BuildFloor)
		}
	}
	if lg.count("timesync: clock file "+file+" damaged: bad time") != 1 ||
		lg.count("timesync: clock file "+file+" says 2100-01-01T00:00:00.000Z, more than 20 years after the build floor") != 1 ||
		lg.count("timesync: clock behind the build floor: 2000-01-01") != 2 {
		t.Error("the damaged and the far-future clock files are not said, or the step to the build floor")
	}
}

// The clock file is written after the first sync, with the time and
// the servers, then not more than once per interval, and at a stop.
func TestClockFileWrittenAfterASync(t *testing.T) {
	l := newLab(t)
	l.chronyd(t, "192.0.2.2", "local stratum 3")
	c := &testClock{}
	c.set(-3 * time.Hour)
	lg := newLogs(t)
	file := filepath.Join(t.TempDir(), "clock")
	svc := newService(t, l, c, lg, "", "192.0.2.2")
	svc.ClockFile = file
	before := time.Now()
	if r := svc.Poll(context.Background()); r.Action != ActionStepped {
		t.Fatalf("first poll: %s (%v)", r.Action, r.Err)
	}
	after := time.Now()
	if lg.count("timesync: no clock file "+file+" yet: the floor is the build floor") != 1 {
		t.Error("the missing clock file is not said")
	}
	first, src, err := ReadClockFile(file)
	if err != nil || !during(first, before, after) || src != "synced from 192.0.2.2" {
		t.Fatalf("after the sync: %s %q %v; want now, synced from 192.0.2.2", first, src, err)
	}
	for i := 0; i < 2; i++ {
		time.Sleep(10 * time.Millisecond)
		if r := svc.Poll(context.Background()); r.Action != ActionSlewed {
			t.Fatalf("poll %d: %s (%v)", i+2, r.Action, r.Err)
		}
		if got, _, _ := ReadClockFile(file); !got.Equal(first) {
			t.Fatalf("poll %d rewrote the clock file within the interval", i+2)
		}
	}
	svc.floorAt = svc.floorAt.Add(-DefaultClockFileInterval) // an hour later
	svc.Poll(context.Background())
	hourly, _, _ := ReadClockFile(file)
	if !hourly.After(first) {
		t.Fatal("the clock file was not rewritten after the interval")
	}
	// A clean stop (a shutdown) saves the time of the stop.
	time.Sleep(10 * time.Millisecond)
	svc.Stop()
	if got, src, err := ReadClockFile(file); err != nil || !got.After(hourly) || src != "synced from 192.0.2.2 (saved at stop)" {
		t.Errorf("after the stop: %s %q %v; want a later time, saved at stop", got, src, err)
	}
	if lg.count("timesync: clock file "+file+": saved ") != 1 {
		t.Error("the save at stop is not logged")
	}
}

// Before the first sync no server may set the clock back past the floor
// an NTS sync saved: a server two hours below it is refused, REFUSED in
// the status, until an administrator approves one step (otgate time
// step); the file then gets the new time. A floor that a plain-NTP sync
// saved only sets the clock forward at start: someone on the uplink who
// forged a time far ahead must not make it outlive the reboot, so the
// first sync steps back to the server.
func TestServerBelowTheFloorRefusedUntilApproved(t *testing.T) {
	l := newLab(t)
	l.chronyd(t, "192.0.2.2", "local stratum 3")
	lg := newLogs(t)

	plain := filepath.Join(t.TempDir(), "clock")
	if err := WriteClockFile(plain, time.Now().Add(2*time.Hour), "synced from 192.0.2.7"); err != nil {
		t.Fatal(err)
	}
	c := &testClock{}
	svc := newService(t, l, c, lg, "", "192.0.2.2")
	svc.ClockFile = plain
	r := svc.Poll(context.Background())
	if r.Action != ActionStepped || !near(c.skew, 0, tolerance) {
		t.Fatalf("a plain-NTP floor two hours ahead: %s (%v), clock off by %s; want stepped back to the server", r.Action, r.Err, c.skew)
	}
	if steps, _ := c.counts(); steps != 2 {
		t.Fatalf("%d steps, want 2 (forward to the floor at start, back to the server)", steps)
	}

	file := filepath.Join(t.TempDir(), "clock")
	if err := WriteClockFile(file, time.Now().Add(2*time.Hour), "synced from nts 192.0.2.7:4460"); err != nil {
		t.Fatal(err)
	}
	c = &testClock{}
	svc = newService(t, l, c, lg, "", "192.0.2.2")
	svc.ClockFile = file
	svc.Approval = filepath.Join(t.TempDir(), "step-approved")
	r = svc.Poll(context.Background())
	if r.Action != ActionFailed || len(r.Samples) != 1 || !errors.Is(r.Samples[0].Err, errBelowFloor) {
		t.Fatalf("a server two hours below an NTS floor: %s (%v); want refused", r.Action, r.Samples)
	}
	if steps, slews := c.counts(); steps != 1 || slews != 0 || !near(c.skew, 2*time.Hour, time.Second) {
		t.Fatalf("clock off by %s (%d steps, %d slews); want only the step to the floor", c.skew, steps, slews)
	}
	if st := lg.lastStatus(); !strings.HasPrefix(st, "REFUSED below the floor ") || !strings.Contains(st, "is before the last known time") {
		t.Errorf("status %q", st)
	}
	if err := WriteStepApproval(svc.Approval, "root (sudo by alice)"); err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	r = svc.Poll(context.Background())
	after := time.Now()
	if r.Action != ActionStepped || !near(c.skew, 0, tolerance) {
		t.Fatalf("approved: %s (%v), clock off by %s; want stepped to the server's time", r.Action, r.Err, c.skew)
	}
	if lg.count("is LIFTED for this boot's first sync, approved by root (sudo by alice)") != 1 {
		t.Error("the lifted floor is not logged with who approved it")
	}
	if _, err := os.Stat(svc.Approval); !errors.Is(err, os.ErrNotExist) {
		t.Error("the approval was not consumed")
	}
	if got, _, err := ReadClockFile(file); err != nil || !during(got, before, after) {
		t.Errorf("the clock file after the approved step: %s, %v; want now", got, err)
	}
}

// With the floor from a previous run, an NTS server whose certificate
// (signed by the site CA) expired before it is refused at the key
// exchange, even before the first sync: whoever holds that old key
// cannot set a booting gate's clock back into its validity. A server
// with a valid certificate syncs from the floor, and the file says so.
func TestNTSCertificateExpiredBeforeTheFloorRefused(t *testing.T) {
	l := newLab(t)
	now := time.Now()
	ca := newTestCA(t, "Plant Time CA", now.AddDate(-3, 0, 0), now.AddDate(1, 0, 0))
	l.ntsChronyd(t, "192.0.2.6", ca, now.AddDate(-2, 0, 0), now.AddDate(-1, 0, 0))
	l.ntsChronyd(t, "192.0.2.2", ca, now.Add(-time.Hour), now.AddDate(1, 0, 0))
	dir := t.TempDir()
	applySite(t, dir, ntsSite(ca, "192.0.2.6"))
	lg := newLogs(t)
	file := filepath.Join(t.TempDir(), "clock")
	if err := WriteClockFile(file, now.Add(-24*time.Hour), "synced from nts 192.0.2.2:4460"); err != nil {
		t.Fatal(err)
	}
	c := &testClock{}
	c.set(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC).Sub(now))
	svc := newNTSService(t, l, dir, c, lg, "")
	svc.ClockFile = file
	r := svc.Poll(context.Background())
	if r.Action != ActionFailed || r.Samples[0].Err == nil ||
		!strings.Contains(r.Samples[0].Err.Error(), "certificate not trusted: below the clock floor: the chain expired at ") {
		t.Fatalf("a certificate expired before the floor: %s (%v); want refused at the key exchange", r.Action, r.Samples)
	}
	if !strings.HasPrefix(lg.lastStatus(), "REFUSED below the floor") {
		t.Errorf("status %q", lg.lastStatus())
	}
	if steps, slews := c.counts(); steps != 1 || slews != 0 || !near(c.skew, -24*time.Hour, time.Second) {
		t.Fatalf("clock off by %s (%d steps, %d slews); want only the step to the floor", c.skew, steps, slews)
	}
	// An approval lifts the floor: the key exchange is tried again at
	// once (not after its back-off) and passes; the server's time is
	// still outside its chain's validity and not used.
	svc.Approval = filepath.Join(t.TempDir(), "step-approved")
	if err := WriteStepApproval(svc.Approval, "root"); err != nil {
		t.Fatal(err)
	}
	r = svc.Poll(context.Background())
	if r.Action != ActionFailed || r.Samples[0].Err == nil || !strings.Contains(r.Samples[0].Err.Error(), "is outside its certificate chain's validity") || svc.kes.Load() != 2 {
		t.Fatalf("with the floor lifted: %s (%v), %d key exchanges; want a second key exchange at once, the time outside the chain", r.Action, r.Samples, svc.kes.Load())
	}

	applySite(t, dir, ntsSite(ca, "192.0.2.2"))
	before := time.Now()
	r = svc.Poll(context.Background())
	after := time.Now()
	if r.Action != ActionStepped || !near(c.skew, 0, tolerance) {
		t.Fatalf("a valid server: %s (%v), clock off by %s", r.Action, r.Err, c.skew)
	}
	if got, src, err := ReadClockFile(file); err != nil || !during(got, before, after) || src != "synced from nts 192.0.2.2:4460" {
		t.Errorf("the clock file: %s %q %v", got, src, err)
	}
}

// The build floor is a time this source was built after.
func TestBuildFloorIsPast(t *testing.T) {
	if BuildFloor.After(time.Now()) {
		t.Fatalf("BuildFloor %s is in the future", BuildFloor)
	}
}

// during says whether a clock file's time was taken during a poll that
// ran from before to after (real time), give or take the stepped test
// clock's residual offset. The write is fsynced after the time is
// taken, so on a loaded disk the poll may return well after it: the
// bound is the poll, not the moment the test looks.
func during(got, before, after time.Time) bool {
	const slack = 100 * time.Millisecond
	return !got.Before(before.Add(-slack)) && !got.After(after.Add(slack))
}
