package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestPermWaitFromCmdline(t *testing.T) {
	for _, tc := range []struct {
		cmdline string
		want    time.Duration
		err     string
	}{
		{"", defaultPermWait, ""},
		{"otgate.perm_wait=90s", 90 * time.Second, ""},
		{"otgate.perm_wait=2m", 2 * time.Minute, ""},
		{"otgate.perm_wait=45", 45 * time.Second, ""},
		{"otgate.perm_wait=5s", 5 * time.Second, ""},
		{"otgate.perm_wait=1s", defaultPermWait, `otgate.perm_wait="1s" is outside 5s to 10m0s; waiting the default 30s`},
		{"otgate.perm_wait=0", defaultPermWait, "is outside 5s to 10m0s"},
		{"otgate.perm_wait=11m", defaultPermWait, "is outside 5s to 10m0s"},
		{"otgate.perm_wait=-30s", defaultPermWait, "is outside"},
		{"otgate.perm_wait=soon", defaultPermWait, `otgate.perm_wait="soon" is not a duration (60s, 2m, or seconds); waiting the default 30s`},
		{"otgate.perm_wait", defaultPermWait, "is not a duration"},
		{"otgate.perm_wait=99999999999", defaultPermWait, "is not a duration"},
	} {
		got, err := permWait(parseCmdline(tc.cmdline))
		if got != tc.want || (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%q: %s, %v; want %s, %q", tc.cmdline, got, err, tc.want, tc.err)
		}
	}
}

// permLoop attaches a fresh ext4 image to a loop device and returns it.
func permLoop(t *testing.T) string {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("needs root (loop device, mount)")
	}
	if _, err := exec.LookPath("losetup"); err != nil {
		t.Skip("needs losetup (util-linux)")
	}
	img := filepath.Join(t.TempDir(), "perm.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(64 << 20)
	f.Close()
	if _, err := formatExt4(img, 0); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("losetup", "--find", "--show", img).Output()
	if err != nil {
		t.Skipf("no loop device: %v", err)
	}
	loop := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", loop).Run() })
	return loop
}

// mountPoint is a directory whose mounts are undone at the end.
func mountPoint(t *testing.T) string {
	mnt := t.TempDir()
	t.Cleanup(func() {
		for unix.Unmount(mnt, unix.MNT_DETACH) == nil {
		}
	})
	return mnt
}

func fsMagic(t *testing.T, dir string) int64 {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return st.Type
}

// The /perm partition appears 1.5 s after init starts looking for it (a
// slow disk): within the wait it is mounted, with the time it took in the
// log; after the wait /perm is the loud tmpfs, and the disk's late
// arrival is reported without mounting it over the tmpfs.
func TestPermWaitsForALateDisk(t *testing.T) {
	loop := permLoop(t)
	appear := func(sys string) {
		time.Sleep(1500 * time.Millisecond)
		dir := filepath.Join(sys, "class/block", filepath.Base(loop)+"p9")
		os.MkdirAll(dir, 0o755)
		os.WriteFile(filepath.Join(dir, "uevent"), []byte("DEVNAME="+filepath.Base(loop)+"\nDEVTYPE=partition\nPARTNAME=otgate-test-perm\n"), 0o644)
	}
	const spec = "PARTLABEL=otgate-test-perm"
	t.Run("within the wait", func(t *testing.T) {
		sys, mnt := t.TempDir(), mountPoint(t)
		go appear(sys)
		log := newLogger()
		st := setupPerm(log, spec, sys, "/dev", mnt, 5*time.Second)
		lines := strings.Join(log.Lines(), "\n")
		if st.Warning != "" || st.FSType != "ext4" || st.Device != loop || fsMagic(t, mnt) != unix.EXT4_SUPER_MAGIC {
			t.Fatalf("%+v\n%s", st, lines)
		}
		for _, want := range []string{
			`init: /perm: waiting up to 5s for ` + spec + ` (no partition labelled "otgate-test-perm" in ` + sys + `/class/block)`,
			"init: /perm: " + spec + " appeared as " + loop + " after 1.",
		} {
			if !strings.Contains(lines, want) {
				t.Errorf("log lacks %q:\n%s", want, lines)
			}
		}
	})
	t.Run("after the wait", func(t *testing.T) {
		sys, mnt := t.TempDir(), mountPoint(t)
		go appear(sys)
		log := newLogger()
		start := time.Now()
		st := setupPerm(log, spec, sys, "/dev", mnt, 500*time.Millisecond)
		if took := time.Since(start); took < 500*time.Millisecond || took > 1400*time.Millisecond {
			t.Errorf("gave up after %s, want about the 500ms wait", took)
		}
		if st.FSType != "tmpfs" || !strings.Contains(st.Warning, `device `+spec+`: no partition labelled "otgate-test-perm"`) || !strings.Contains(st.Warning, "(waited 500ms)") {
			t.Fatalf("%+v\n%s", st, strings.Join(log.Lines(), "\n"))
		}
		waitLine(t, log, "init: WARNING: /perm: "+spec+" appeared as "+loop+", ")
		if i := lineIndex(log.Lines(), "init: WARNING: /perm: "+spec+" appeared"); !strings.Contains(log.Lines()[i], "/perm stays a tmpfs until the next boot; if this disk is always this slow, set otgate.perm_wait= longer") {
			t.Errorf("late disk line: %s", log.Lines()[i])
		}
		if fsMagic(t, mnt) != unix.TMPFS_MAGIC {
			t.Error("/perm is no longer the tmpfs the services use")
		}
	})
}

// A mount that fails (here: the disk is write-protected for a moment,
// mount returns EACCES) is tried again; one that keeps failing ends in
// the loud tmpfs after three tries.
func TestPermRetriesAFailedMount(t *testing.T) {
	loop := permLoop(t)
	setRO := func(on int) {
		t.Helper()
		f, err := os.Open(loop)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := unix.IoctlSetPointerInt(int(f.Fd()), unix.BLKROSET, on); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { setRO(0) })
	t.Run("passes", func(t *testing.T) {
		mnt := mountPoint(t)
		setRO(1)
		done := make(chan struct{})
		go func() {
			time.Sleep(500 * time.Millisecond)
			setRO(0)
			close(done)
		}()
		log := newLogger()
		st := setupPerm(log, loop, "/sys", "/dev", mnt, permWaitMin)
		<-done
		lines := strings.Join(log.Lines(), "\n")
		if st.Warning != "" || st.FSType != "ext4" || fsMagic(t, mnt) != unix.EXT4_SUPER_MAGIC {
			t.Fatalf("%+v\n%s", st, lines)
		}
		if !strings.Contains(lines, "init: /perm: mount "+loop+" on "+mnt+": permission denied; trying again in 1s (2 of 3)") {
			t.Fatalf("no retry line:\n%s", lines)
		}
	})
	t.Run("keeps failing", func(t *testing.T) {
		mnt := mountPoint(t)
		setRO(1)
		log := newLogger()
		start := time.Now()
		st := setupPerm(log, loop, "/sys", "/dev", mnt, permWaitMin)
		lines := strings.Join(log.Lines(), "\n")
		if st.FSType != "tmpfs" || !strings.Contains(st.Warning, "mount "+loop+" on "+mnt+": permission denied") || fsMagic(t, mnt) != unix.TMPFS_MAGIC {
			t.Fatalf("%+v\n%s", st, lines)
		}
		if took := time.Since(start); took < 3*time.Second {
			t.Errorf("gave up after %s, want three tries 1 s and 2 s apart", took)
		}
		for _, want := range []string{"trying again in 1s (2 of 3)", "trying again in 2s (3 of 3)", "WARNING: NO PERSISTENT STORAGE"} {
			if !strings.Contains(lines, want) {
				t.Errorf("log lacks %q:\n%s", want, lines)
			}
		}
	})
}

// Two partitions with the /perm label are an answer, not a disk still to
// come: init stops waiting at once.
func TestPermWaitStopsAtADuplicateLabel(t *testing.T) {
	sys := t.TempDir()
	for _, dev := range []string{"sda2", "sdb2"} {
		os.MkdirAll(filepath.Join(sys, "class/block", dev), 0o755)
		os.WriteFile(filepath.Join(sys, "class/block", dev, "uevent"), []byte("DEVNAME="+dev+"\nPARTNAME=otgate-perm\n"), 0o644)
	}
	start := time.Now()
	_, err := waitPermDevice(newLogger(), "PARTLABEL=otgate-perm", sys, "/dev", 5*time.Second)
	if err == nil || !strings.Contains(err.Error(), "2 partitions labelled \"otgate-perm\" (/dev/sda2, /dev/sdb2): refusing to guess which is /perm") {
		t.Fatalf("%v, want the duplicate label named", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("waited %s for a disk that cannot come", took)
	}
}
