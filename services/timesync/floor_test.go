package timesync

import (
	"context"
	"os"
	"path/filepath"
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
	lg := &logs{}
	defer func() {
		if t.Failed() {
			lg.dump(t)
		}
	}()
	file := filepath.Join(t.TempDir(), "timesync", "clock")
	saved := now.Add(-time.Hour).UTC()
	if err := WriteClockFile(file, saved, "synced from nts 192.0.2.1:4460"); err != nil {
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
// the servers, and then not more than once per interval.
func TestClockFileWrittenAfterASync(t *testing.T) {
	l := newLab(t)
	l.chronyd(t, "192.0.2.2", "local stratum 3")
	c := &testClock{}
	c.set(-3 * time.Hour)
	lg := &logs{}
	defer func() {
		if t.Failed() {
			lg.dump(t)
		}
	}()
	file := filepath.Join(t.TempDir(), "clock")
	svc := newService(t, l, c, lg, "", "192.0.2.2")
	svc.ClockFile = file
	if r := svc.Poll(context.Background()); r.Action != ActionStepped {
		t.Fatalf("first poll: %s (%v)", r.Action, r.Err)
	}
	if lg.count("timesync: no clock file "+file+" yet: the floor is the build floor") != 1 {
		t.Error("the missing clock file is not said")
	}
	first, src, err := ReadClockFile(file)
	if err != nil || !near(time.Since(first), 0, time.Second) || src != "synced from 192.0.2.2" {
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
	if got, _, _ := ReadClockFile(file); !got.After(first) {
		t.Fatal("the clock file was not rewritten after the interval")
	}
}

// The build floor is a time this source was built after.
func TestBuildFloorIsPast(t *testing.T) {
	if BuildFloor.After(time.Now()) {
		t.Fatalf("BuildFloor %s is in the future", BuildFloor)
	}
}
