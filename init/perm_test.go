package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestResolvePermDevice(t *testing.T) {
	sys := t.TempDir()
	for dev, uevent := range map[string]string{
		"vda":  "MAJOR=254\nMINOR=0\nDEVNAME=vda\nDEVTYPE=disk\n",
		"vda1": "MAJOR=254\nMINOR=1\nDEVNAME=vda1\nDEVTYPE=partition\nPARTN=1\nPARTNAME=ESP\n",
		"vda2": "MAJOR=254\nMINOR=2\nDEVNAME=vda2\nDEVTYPE=partition\nPARTN=2\nPARTNAME=otgate-perm\n",
	} {
		os.MkdirAll(filepath.Join(sys, "class/block", dev), 0o755)
		os.WriteFile(filepath.Join(sys, "class/block", dev, "uevent"), []byte(uevent), 0o644)
	}
	for _, tc := range []struct{ spec, want, err string }{
		{"/dev/vda", "/dev/vda", ""},
		{"PARTLABEL=otgate-perm", "/dev/vda2", ""},
		{"PARTLABEL=nope", "", `no partition labelled "nope"`},
	} {
		got, err := resolvePermDevice(tc.spec, sys, "/dev")
		if got != tc.want || (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%s: %q, %v; want %q, %q", tc.spec, got, err, tc.want, tc.err)
		}
	}
}

func TestProbeDisk(t *testing.T) {
	dir := t.TempDir()
	blank := filepath.Join(dir, "blank")
	os.WriteFile(blank, make([]byte, 1<<20), 0o644)
	junk := filepath.Join(dir, "junk")
	b := make([]byte, 1<<20)
	copy(b[512:], "EFI PART")
	os.WriteFile(junk, b, 0o644)
	ext := filepath.Join(dir, "ext")
	b = make([]byte, 1<<20)
	b[1024+0x38], b[1024+0x39] = 0x53, 0xEF
	os.WriteFile(ext, b, 0o644)
	for path, want := range map[string]diskContent{blank: diskBlank, junk: diskUnknown, ext: diskExt4} {
		if got, err := probeDisk(path); err != nil || got != want {
			t.Errorf("%s: %v, %v; want %v", filepath.Base(path), got, err, want)
		}
	}
}

func TestCountBoot(t *testing.T) {
	p := filepath.Join(t.TempDir(), "init", "boots")
	for want := uint64(1); want <= 3; want++ {
		if n, err := countBoot(p); err != nil || n != want {
			t.Fatalf("boot %d: got %d, %v", want, n, err)
		}
	}
	os.WriteFile(p, []byte("garbage\n"), 0o644)
	if _, err := countBoot(p); err == nil || !strings.Contains(err.Error(), p) {
		t.Fatalf("corrupt counter: %v, want an error naming %s", err, p)
	}
	if b, _ := os.ReadFile(p); string(b) != "garbage\n" {
		t.Fatalf("corrupt counter was changed to %q", b)
	}
}

// The whole /perm path on a real loop device: a blank disk is formatted
// with go-diskfs, mounted by this host's kernel, written, unmounted and
// accepted by e2fsck; the second boot mounts it without formatting.
func TestPermFormatsBlankDiskAndKernelMountsIt(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root (loop device, mount)")
	}
	for _, bin := range []string{"losetup", "e2fsck"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("needs %s (util-linux, e2fsprogs)", bin)
		}
	}
	img := filepath.Join(t.TempDir(), "perm.img")
	f, _ := os.Create(img)
	f.Truncate(128 << 20)
	f.Close()
	out, err := exec.Command("losetup", "--find", "--show", img).Output()
	if err != nil {
		t.Skipf("no loop device: %v", err)
	}
	loop := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", loop).Run() })
	mnt := t.TempDir()
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })

	var buf bytes.Buffer
	log := newLogger(&buf)
	st := setupPerm(log, loop, "/sys", "/dev", mnt, permWaitMin)
	if st.Warning != "" || st.FSType != "ext4" || st.Boots != 1 {
		t.Fatalf("first boot: %+v\n%s", st, buf.String())
	}
	for _, want := range []string{"init: /perm: " + loop + " is blank, formatting ext4", "init: /perm mounted (" + loop + ", ext4, boot 1)"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, buf.String())
		}
	}
	if err := os.WriteFile(filepath.Join(mnt, "policy.cbor"), bytes.Repeat([]byte("x"), 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := unix.Unmount(mnt, 0); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("e2fsck", "-fn", loop).CombinedOutput(); err != nil {
		t.Fatalf("e2fsck -fn after first boot: %v\n%s", err, out)
	}

	buf.Reset()
	st = setupPerm(log, loop, "/sys", "/dev", mnt, permWaitMin)
	if st.Boots != 2 || strings.Contains(buf.String(), "formatting") {
		t.Fatalf("second boot: %+v\n%s", st, buf.String())
	}
	if b, err := os.ReadFile(filepath.Join(mnt, "policy.cbor")); err != nil || len(b) != 1<<20 {
		t.Fatalf("data from the first boot: %d bytes, %v", len(b), err)
	}
	if err := unix.Unmount(mnt, 0); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("e2fsck", "-fn", loop).CombinedOutput(); err != nil {
		t.Fatalf("e2fsck -fn after second boot: %v\n%s", err, out)
	}
}

// A disk with content that is not ext4 is never formatted: /perm becomes a
// tmpfs with a warning and the disk is unchanged.
func TestPermRefusesUnknownContent(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root (tmpfs mount)")
	}
	img := filepath.Join(t.TempDir(), "other.img")
	b := make([]byte, 4<<20)
	copy(b[512:], "EFI PART")
	os.WriteFile(img, b, 0o644)
	mnt := t.TempDir()
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
	var buf bytes.Buffer
	st := setupPerm(newLogger(&buf), img, "/sys", "/dev", mnt, permWaitMin)
	if st.FSType != "tmpfs" || !strings.Contains(st.Warning, "refusing to format") {
		t.Fatalf("%+v", st)
	}
	if !strings.Contains(buf.String(), "WARNING: NO PERSISTENT STORAGE") {
		t.Fatalf("no loud warning:\n%s", buf.String())
	}
	if after, _ := os.ReadFile(img); !bytes.Equal(after, b) {
		t.Fatal("the disk was changed")
	}
}
