package main

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/partition/gpt"
	"golang.org/x/sys/unix"
)

// The generic-x86_64 image's layout (image/disk.go): ESP from 1 MiB,
// 128 MiB, then otgate-perm, 256 MiB, then 1 MiB for the backup GPT.
const (
	imgESPFirst  = 2048
	imgPermFirst = imgESPFirst + 128<<20/512
	imgPermLast  = imgPermFirst + 256<<20/512 - 1
	imgDiskSize  = (imgPermLast+1)*512 + 1<<20
)

func imageLayout() []*gpt.Partition {
	return []*gpt.Partition{
		{Index: 1, Start: imgESPFirst, End: imgPermFirst - 1, Type: gpt.EFISystemPartition, Name: "EFI System"},
		{Index: 2, Start: imgPermFirst, End: imgPermLast, Type: gpt.LinuxFilesystem, Name: "otgate-perm"},
	}
}

// needDiskTools skips a test that needs root, loop devices and the host's
// GPT tools (util-linux, gdisk, e2fsprogs).
func needDiskTools(t *testing.T) {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("needs root (loop devices)")
	}
	for _, bin := range []string{"losetup", "partx", "sgdisk", "e2fsck", "dumpe2fs"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("needs %s (tools/install-deps.sh: util-linux, gdisk, e2fsprogs)", bin)
		}
	}
}

// gptDiskFile writes a sparse disk image of size bytes with a GPT (go-diskfs,
// as image/disk.go does) holding parts.
func gptDiskFile(t *testing.T, path string, size int64, parts []*gpt.Partition) {
	t.Helper()
	d, err := diskfs.Create(path, size, diskfs.SectorSize512)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.Partition(&gpt.Table{LogicalSectorSize: 512, PhysicalSectorSize: 512, ProtectiveMBR: true, Partitions: parts}); err != nil {
		t.Fatal(err)
	}
}

// attachLoop attaches img to a loop device and has the kernel add its
// partitions (partx: BLKPG_ADD_PARTITION, which works where the loop
// driver's own scan does not in this sandbox). It returns the disk.
func attachLoop(t *testing.T, img string) string {
	t.Helper()
	loop := attachWholeLoop(t, img)
	if _, err := os.Stat(loop + "p1"); err != nil {
		if out, err := exec.Command("partx", "-a", loop).CombinedOutput(); err != nil {
			t.Fatalf("partx -a %s: %v\n%s", loop, err, out)
		}
	}
	return loop
}

// attachWholeLoop attaches img to a loop device (no partitions).
func attachWholeLoop(t *testing.T, img string) string {
	t.Helper()
	out, err := exec.Command("losetup", "--find", "--show", "--partscan", img).Output()
	if err != nil {
		t.Skipf("no loop device: %v", err)
	}
	loop := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", loop).Run() })
	return loop
}

func detachLoop(t *testing.T, loop string) {
	t.Helper()
	if out, err := exec.Command("losetup", "-d", loop).CombinedOutput(); err != nil {
		t.Fatalf("losetup -d %s: %v\n%s", loop, err, out)
	}
}

// sgdiskVerify fails unless sgdisk -v finds no problem on img.
func sgdiskVerify(t *testing.T, img string) {
	t.Helper()
	out, err := exec.Command("sgdisk", "-v", img).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "No problems found") {
		t.Fatalf("sgdisk -v %s: %v\n%s", img, err, out)
	}
}

// partEnd is the last LBA of partition n of img as sgdisk reads it.
func partEnd(t *testing.T, img string, n int) uint64 {
	t.Helper()
	out, err := exec.Command("sgdisk", "-i", strconv.Itoa(n), img).CombinedOutput()
	if err != nil {
		t.Fatalf("sgdisk -i %d %s: %v\n%s", n, img, err, out)
	}
	m := regexp.MustCompile(`Last sector: (\d+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("sgdisk -i %d %s:\n%s", n, img, out)
	}
	v, _ := strconv.ParseUint(string(m[1]), 10, 64)
	return v
}

// sysSectors is the kernel's size of a block device in 512-byte sectors.
func sysSectors(t *testing.T, dev string) int64 {
	t.Helper()
	n, err := readSysInt(filepath.Join("/sys/class/block", filepath.Base(dev), "size"))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// canResizeExt4 says whether this process may grow a mounted ext4
// (EXT4_IOC_RESIZE_FS wants CAP_SYS_RESOURCE, which this sandbox's root
// lacks; PID 1 in the appliance has it, and the QEMU test covers it).
func canResizeExt4() bool {
	b, _ := os.ReadFile("/proc/self/status")
	m := regexp.MustCompile(`(?m)^CapEff:\s+([0-9a-f]+)$`).FindSubmatch(b)
	if m == nil {
		return false
	}
	caps, _ := strconv.ParseUint(string(m[1]), 16, 64)
	return caps&(1<<unix.CAP_SYS_RESOURCE) != 0
}

func growDiskFile(t *testing.T, img string, size int64) {
	t.Helper()
	if err := os.Truncate(img, size); err != nil {
		t.Fatal(err)
	}
}

// The image's disk dd'ed onto a bigger one (here: its file made 2 GiB),
// with an ext4 /perm holding a file: the boot grows the partition to the
// disk's last usable LBA with the backup GPT at the disk's end (sgdisk
// finds no problem), tells the kernel, and grows the mounted file system
// online; the file is still there and e2fsck is happy. The next boot
// grows nothing and logs nothing.
func TestPermGrowsToTheDiskEnd(t *testing.T) {
	needDiskTools(t)
	img := filepath.Join(t.TempDir(), "disk.img")
	gptDiskFile(t, img, imgDiskSize, imageLayout())
	loop := attachLoop(t, img)
	part := loop + "p2"
	if _, err := formatExt4(part, 0); err != nil {
		t.Fatal(err)
	}
	mnt := t.TempDir()
	if err := unix.Mount(part, mnt, "ext4", 0, ""); err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("audit "), 100000)
	if err := os.WriteFile(filepath.Join(mnt, "before"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := unix.Unmount(mnt, 0); err != nil {
		t.Fatal(err)
	}
	detachLoop(t, loop)

	const size = 2 << 30
	growDiskFile(t, img, size)
	loop = attachLoop(t, img)
	part = loop + "p2"
	var buf bytes.Buffer
	log := newLogger(&buf)
	st, err := mountPermDevice(log, part, "/sys", "/dev", mnt, permWaitMin)
	if err != nil {
		t.Fatalf("mount: %v\n%s", err, buf.String())
	}
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
	t.Logf("log:\n%s", buf.String())

	lastUsable := uint64(size/512 - 34)
	wantPart := regexp.MustCompile(`^init: /perm: grew partition 2 of ` + regexp.QuoteMeta(loop) + ` from 256 MiB to 1\.9 GiB \(GPT moved to the disk's end\)$`)
	if !wantPart.MatchString(strings.SplitN(buf.String(), "\n", 2)[0]) {
		t.Errorf("first log line is not %s", wantPart)
	}
	if got := sysSectors(t, part); got != int64(lastUsable-imgPermFirst+1) {
		t.Errorf("kernel's %s: %d sectors, want %d (BLKPG_RESIZE_PARTITION)", part, got, lastUsable-imgPermFirst+1)
	}
	if b, err := os.ReadFile(filepath.Join(mnt, "before")); err != nil || !bytes.Equal(b, data) {
		t.Errorf("the file written before the growth: %d bytes, %v", len(b), err)
	}
	resized := canResizeExt4()
	want := int64(lastUsable-imgPermFirst+1) * 512 / 1024 * 1024
	if resized {
		if st.Size != want || !strings.Contains(st.Grown, "grew "+part+" from 256 MiB to 1.9 GiB (GPT moved to the disk's end)") {
			t.Errorf("state %+v; want size %d and the growth noted", st, want)
		}
		if err := os.WriteFile(filepath.Join(mnt, "after"), bytes.Repeat([]byte("y"), 300<<20), 0o600); err != nil {
			t.Errorf("300 MiB more on the grown file system: %v", err)
		}
	} else {
		t.Logf("no CAP_SYS_RESOURCE here: the file system is not grown on this host (the QEMU test TestGenericPermGrows grows it)")
		if !strings.Contains(buf.String(), "/perm: file system not grown: EXT4_IOC_RESIZE_FS "+part) || st.Size != 256<<20 ||
			!strings.Contains(st.Grown, "its file system was not grown") {
			t.Errorf("without CAP_SYS_RESOURCE the log and state must say the file system was not grown: %+v", st)
		}
	}
	if err := unix.Unmount(mnt, 0); err != nil {
		t.Fatal(err)
	}
	sgdiskVerify(t, img)
	if got := partEnd(t, img, 2); got != lastUsable {
		t.Errorf("otgate-perm ends at LBA %d, want the last usable LBA %d", got, lastUsable)
	}
	if got := partEnd(t, img, 1); got != imgPermFirst-1 {
		t.Errorf("the ESP ends at LBA %d, want %d (unchanged)", got, imgPermFirst-1)
	}
	if out, err := exec.Command("e2fsck", "-fn", part).CombinedOutput(); err != nil {
		t.Fatalf("e2fsck -fn: %v\n%s", err, out)
	}
	if resized {
		out, _ := exec.Command("dumpe2fs", "-h", part).CombinedOutput()
		if !strings.Contains(string(out), "Block count:              "+strconv.FormatInt(want/1024, 10)+"\n") {
			t.Errorf("dumpe2fs: want %d blocks:\n%s", want/1024, out)
		}
	}
	// The old backup header (at the old disk's last LBA) is zeroed.
	f, _ := os.Open(img)
	old := make([]byte, 512)
	f.ReadAt(old, imgDiskSize-512)
	f.Close()
	if bytes.Contains(old, []byte(gptSignature)) {
		t.Errorf("the old backup GPT header is still at LBA %d", imgDiskSize/512-1)
	}

	// The next boot: nothing to grow, nothing logged.
	detachLoop(t, loop)
	loop = attachLoop(t, img)
	buf.Reset()
	if _, err := mountPermDevice(log, loop+"p2", "/sys", "/dev", mnt, permWaitMin); err != nil {
		t.Fatal(err)
	}
	if resized && buf.Len() != 0 {
		t.Errorf("second boot logged:\n%s", buf.String())
	}
	if strings.Contains(buf.String(), "partition") {
		t.Errorf("second boot touched the partition:\n%s", buf.String())
	}
}

// A first boot: the partition is blank. It grows, and the file system is
// formatted at the partition's old size (as fast as ever) and then grown
// online by the kernel.
func TestPermGrowsBlankPartitionFormatsOldSize(t *testing.T) {
	needDiskTools(t)
	img := filepath.Join(t.TempDir(), "disk.img")
	gptDiskFile(t, img, imgDiskSize, imageLayout())
	growDiskFile(t, img, 1<<30)
	loop := attachLoop(t, img)
	mnt := t.TempDir()
	var buf bytes.Buffer
	st, err := mountPermDevice(newLogger(&buf), loop+"p2", "/sys", "/dev", mnt, permWaitMin)
	if err != nil {
		t.Fatalf("mount: %v\n%s", err, buf.String())
	}
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
	t.Logf("log:\n%s", buf.String())
	for _, want := range []string{
		"init: /perm: grew partition 2 of " + loop + " from 256 MiB to 894 MiB",
		"init: /perm: formatted " + loop + "p2 (256 MiB) in ",
	} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("log lacks %q", want)
		}
	}
	if canResizeExt4() && (st.Size < 890<<20 || !strings.Contains(buf.String(), "/perm: grew the file system on "+loop+"p2 from 256 MiB to 894 MiB in ")) {
		t.Errorf("the file system was not grown: %+v", st)
	}
	unix.Unmount(mnt, 0)
	sgdiskVerify(t, img)
}

// Power cuts between the GPT steps: whatever reached the disk, the next
// boot converges on the grown layout, and sgdisk is happy at the end.
func TestPermGrowConvergesAfterPowerCut(t *testing.T) {
	needDiskTools(t)
	for _, tc := range []struct {
		name string
		cut  func(t *testing.T, d *gptDisk, pl *gptPlan)
	}{
		{"after the backup", func(t *testing.T, d *gptDisk, pl *gptPlan) {
			if err := d.write(pl.backup.entriesLBA, append(append([]byte(nil), pl.entries...), pl.backup.raw...)); err != nil {
				t.Fatal(err)
			}
		}},
		{"after the primary, before the kernel was told", func(t *testing.T, d *gptDisk, pl *gptPlan) {
			if err := pl.apply(d); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := filepath.Join(t.TempDir(), "disk.img")
			gptDiskFile(t, img, imgDiskSize, imageLayout())
			const size = 1 << 30
			growDiskFile(t, img, size)
			loop := attachLoop(t, img)
			p, ok, err := sysPartition(loop+"p2", "/sys", "/dev")
			if err != nil || !ok {
				t.Fatalf("sysPartition: %v %v", ok, err)
			}
			f, err := os.OpenFile(loop, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			d := &gptDisk{f: f, name: loop, lbs: 512, lastLBA: size/512 - 1}
			pl, err := planGPTGrowth(d, p)
			if err != nil {
				t.Fatal(err)
			}
			tc.cut(t, d, pl)
			f.Close()
			// The power comes back: the kernel reads the table anew.
			detachLoop(t, loop)
			out, err := exec.Command("sgdisk", "-v", img).CombinedOutput()
			t.Logf("after the cut, sgdisk -v: %v\n%s", err, out)
			loop = attachLoop(t, img)

			var buf bytes.Buffer
			growPermPartition(newLogger(&buf), loop+"p2", "/sys", "/dev")
			t.Logf("log: %s", buf.String())
			if strings.Contains(buf.String(), "not grown") {
				t.Errorf("the boot after the cut did not converge")
			}
			sgdiskVerify(t, img)
			if got, want := partEnd(t, img, 2), uint64(size/512-34); got != want {
				t.Errorf("otgate-perm ends at LBA %d, want %d", got, want)
			}
			if got, want := sysSectors(t, loop+"p2"), int64(size/512-34-imgPermFirst+1); got != want {
				t.Errorf("kernel's size %d sectors, want %d", got, want)
			}
		})
	}
}

// What must not grow: the disk is left byte for byte as it was, and the
// reason is logged once.
func TestPermGrowRefusals(t *testing.T) {
	needDiskTools(t)
	const small, big = 64 << 20, 256 << 20
	perm1 := func(first, last uint64) *gpt.Partition {
		return &gpt.Partition{Index: 1, Start: first, End: last, Type: gpt.LinuxFilesystem, Name: "otgate-perm"}
	}
	for _, tc := range []struct {
		name  string
		parts []*gpt.Partition
		part  string // perm's partition device suffix
		spoil func(t *testing.T, img, loop string)
		want  string
	}{
		{name: "a partition after it", part: "p1",
			parts: []*gpt.Partition{perm1(2048, 40959),
				{Index: 2, Start: 40960, End: 61439, Type: gpt.LinuxFilesystem, Name: "data"}},
			want: `partition 2 ("data", LBA 40960-61439) lies after otgate-perm (partition 1): it is not the disk's last`},
		{name: "an earlier entry placed after it", part: "p2",
			parts: []*gpt.Partition{{Index: 1, Start: 100000, End: 110000, Type: gpt.LinuxFilesystem, Name: "vendor"},
				{Index: 2, Start: 2048, End: 40959, Type: gpt.LinuxFilesystem, Name: "otgate-perm"}},
			want: `partition 1 ("vendor", LBA 100000-110000) lies after otgate-perm (partition 2)`},
		{name: "a corrupt backup GPT", part: "p1", parts: []*gpt.Partition{perm1(2048, 40959)},
			spoil: func(t *testing.T, img, _ string) {
				f, _ := os.OpenFile(img, os.O_RDWR, 0)
				defer f.Close()
				f.WriteAt([]byte{0x5a}, small-512+60) // in the disk GUID
			},
			want: "backup GPT (LBA 131071) does not verify: header CRC32"},
		{name: "an ext4 with errors", part: "p1", parts: []*gpt.Partition{perm1(2048, 40959)},
			spoil: func(t *testing.T, img, loop string) {
				if _, err := formatExt4(loop+"p1", 0); err != nil {
					t.Fatal(err)
				}
				f, _ := os.OpenFile(loop+"p1", os.O_RDWR, 0)
				defer f.Close()
				var st [2]byte
				binary.LittleEndian.PutUint16(st[:], 1|2) // valid, errors
				f.WriteAt(st[:], 1024+0x3a)
				f.Sync()
			},
			want: "is not clean (state 0x3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := filepath.Join(t.TempDir(), "disk.img")
			gptDiskFile(t, img, small, tc.parts)
			loop := attachLoop(t, img)
			if tc.spoil != nil {
				tc.spoil(t, img, loop)
			}
			growDiskFile(t, img, big)
			if out, err := exec.Command("losetup", "-c", loop).CombinedOutput(); err != nil {
				t.Fatalf("losetup -c: %v\n%s", err, out)
			}
			before := fileSHA(t, img)
			sectors := sysSectors(t, loop+tc.part)

			var buf bytes.Buffer
			g := growPermPartition(newLogger(&buf), loop+tc.part, "/sys", "/dev")
			lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
			if len(lines) != 1 || !strings.Contains(lines[0], "/perm: not grown: ") || !strings.Contains(lines[0], tc.want) ||
				!strings.HasSuffix(lines[0], "; nothing changed") {
				t.Errorf("log:\n%s\nwant one line with %q", buf.String(), tc.want)
			}
			t.Logf("%s", lines[0])
			if g.to != 0 || fileSHA(t, img) != before || sysSectors(t, loop+tc.part) != sectors {
				t.Errorf("the disk or the kernel's partition changed: %+v", g)
			}
		})
	}
}

// The qemu boards' /perm is a whole virtio disk: one made bigger (qemu-img
// resize) has its file system grown online, the same step as after a
// partition grew; the partition step has nothing to do.
func TestPermGrowsWholeDiskFileSystem(t *testing.T) {
	needDiskTools(t)
	img := filepath.Join(t.TempDir(), "perm.raw")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	growDiskFile(t, img, 64<<20)
	loop := attachWholeLoop(t, img)
	if _, err := formatExt4(loop, 0); err != nil {
		t.Fatal(err)
	}
	growDiskFile(t, img, 128<<20)
	if out, err := exec.Command("losetup", "-c", loop).CombinedOutput(); err != nil {
		t.Fatalf("losetup -c: %v\n%s", err, out)
	}
	mnt := t.TempDir()
	var buf bytes.Buffer
	st, err := mountPermDevice(newLogger(&buf), loop, "/sys", "/dev", mnt, permWaitMin)
	if err != nil {
		t.Fatalf("mount: %v\n%s", err, buf.String())
	}
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
	t.Logf("log:\n%s", buf.String())
	if strings.Contains(buf.String(), "partition") {
		t.Errorf("a whole disk has no partition to grow")
	}
	if canResizeExt4() {
		if st.Size != 128<<20 || st.Grown != "grew the file system on "+loop+" from 64 MiB to 128 MiB" {
			t.Errorf("state %+v", st)
		}
	} else if !strings.Contains(buf.String(), "init: /perm: file system not grown: EXT4_IOC_RESIZE_FS "+loop+" to 131072 blocks: operation not permitted") || st.Size != 64<<20 {
		t.Errorf("without CAP_SYS_RESOURCE the log must say the file system was not grown: %+v", st)
	}
}

// kernelSays reads the kernel's log without waiting for a new message.
func TestKernelSaysDoesNotBlock(t *testing.T) {
	if _, err := os.Stat("/dev/kmsg"); err != nil {
		t.Skip("no /dev/kmsg")
	}
	done := make(chan string)
	go func() { done <- kernelSays("a message no kernel", "ever logged") }()
	select {
	case s := <-done:
		if s != "" {
			t.Errorf("kernelSays found %q", s)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("kernelSays blocked on /dev/kmsg")
	}
}
