package hostidle

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDescribe(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	oldD, oldG, oldH := driverPath, governorPath, haltPollPath
	t.Cleanup(func() { driverPath, governorPath, haltPollPath = oldD, oldG, oldH })

	driverPath, governorPath, haltPollPath = filepath.Join(dir, "none"), filepath.Join(dir, "none"), filepath.Join(dir, "none")
	if got := Describe(); !strings.Contains(got, "no driver reported") {
		t.Errorf("no sysfs: %q", got)
	}
	driverPath, governorPath = write("driver", "haltpoll"), write("governor", "haltpoll")
	haltPollPath = write("poll", "0")
	if got, want := Describe(), "cpuidle: driver haltpoll, governor haltpoll, guest halt polling off"; !strings.HasPrefix(got, want) {
		t.Errorf("polling off: %q, want prefix %q", got, want)
	}
	haltPollPath = write("poll", "200000")
	if got, want := Describe(), "cpuidle: driver haltpoll, governor haltpoll, guest halt polling 200000 ns"; got != want {
		t.Errorf("polling on: %q, want %q", got, want)
	}
	driverPath = write("driver", "intel_idle")
	if got, want := Describe(), "cpuidle: driver intel_idle, governor haltpoll"; got != want {
		t.Errorf("other driver: %q, want %q", got, want)
	}
}
