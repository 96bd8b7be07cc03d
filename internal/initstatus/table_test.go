package initstatus

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestWriteTable(t *testing.T) {
	boot := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	st := &Status{
		Hostname: "gate", Board: "qemu-x86_64", ImageID: "0123456789abcdef", BootTime: boot, Uptime: 2500 * time.Millisecond,
		Ready: true, InitRSS: 3 << 20,
		Perm:     Perm{FSType: "tmpfs", Boots: 1, Warning: "no persistent storage"},
		Watchdog: Watchdog{Device: "/dev/watchdog", Timeout: 10 * time.Second, Note: "proxy unhealthy"},
		Services: []Service{
			{Name: "segment", Critical: true, State: StateReady, PID: 42, Since: boot},
			{Name: "proxy", State: StateFailed, Restarts: 5, LastExit: "status 2", Since: boot, Reason: "crash loop"},
		},
	}
	var b bytes.Buffer
	if err := WriteTable(&b, st); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"host      gate (board qemu-x86_64, image 0123456789ab)",
		"up        2.5s (since 2026-01-02T03:04:05Z), ready: yes",
		"init      rss 3.0 MiB",
		"perm      tmpfs, boot 1: WARNING: no persistent storage",
		"watchdog  /dev/watchdog, timeout 10s, NOT petting (proxy unhealthy)",
		"segment*  ready   42   0         -          03:04:05",
		"proxy     failed  -    5         status 2   03:04:05  crash loop",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
}

func TestStatusRoundTripIsDeterministic(t *testing.T) {
	st := Status{Hostname: "gate", BootTime: time.Unix(1700000000, 5).UTC(), Services: []Service{{Name: "a", State: StateReady}}}
	a, err := EncMode().Marshal(Response{Status: &st})
	if err != nil {
		t.Fatal(err)
	}
	var back Response
	if err := DecMode().Unmarshal(a, &back); err != nil {
		t.Fatal(err)
	}
	b, _ := EncMode().Marshal(back)
	if !bytes.Equal(a, b) || !back.Status.BootTime.Equal(st.BootTime) || back.Status.Services[0].Name != "a" {
		t.Fatalf("round trip changed the status: %+v", back.Status)
	}
}

// /perm's size, what this boot grew, and how the previous run ended are
// in the table.
func TestWriteTablePermGrown(t *testing.T) {
	st := &Status{Perm: Perm{Device: "/dev/vda2", FSType: "ext4", Size: 1946 << 20, Boots: 1,
		Grown:       "grew otgate-perm from 255 MiB to 1.9 GiB (GPT moved to the disk's end)",
		PreviousRun: "NO CLEAN SHUTDOWN (boot 6 started 2026-11-24T08:00:00Z; power cut, reset or crash); unclean ends on this disk: 1"}}
	var b bytes.Buffer
	if err := WriteTable(&b, st); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"perm      /dev/vda2 (ext4, 1.9 GiB), boot 1\n",
		"          grew otgate-perm from 255 MiB to 1.9 GiB (GPT moved to the disk's end) this boot\n",
		"          previous run: NO CLEAN SHUTDOWN (boot 6 started 2026-11-24T08:00:00Z; power cut, reset or crash); unclean ends on this disk: 1\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
}

// A watchdog whose device reported no timeout says "unknown", not "0s".
func TestWriteTableWatchdogTimeoutUnknown(t *testing.T) {
	st := &Status{Watchdog: Watchdog{Device: "/dev/watchdog0", Petting: true, Note: "timeout unknown"}}
	var b bytes.Buffer
	if err := WriteTable(&b, st); err != nil {
		t.Fatal(err)
	}
	if want := "watchdog  /dev/watchdog0, timeout unknown, petting"; !strings.Contains(b.String(), want) {
		t.Errorf("table lacks %q:\n%s", want, b.String())
	}
}
