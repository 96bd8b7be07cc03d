package boot

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/otgate/otgate/integration/internal/gatetest"
	"github.com/otgate/otgate/qemu"
)

// generic-x86_64 dd'ed onto a bigger disk (a copy of the image's disk,
// qemu-img resize'd to 2 GiB): the first boot, under OVMF with the real
// kernel, moves the backup GPT to the disk's end, grows otgate-perm to the
// last usable LBA, formats it (at its old size) and grows the file system
// online to ~1.9 GiB, and says so in the log and the status table. On the
// host the disk passes sgdisk -v and e2fsck, and the file system fills
// the partition. The second boot reads what the first wrote (its boot
// counter, the identity it created) and grows nothing.
func TestGenericPermGrows(t *testing.T) {
	b, img := gatetest.Image(t, "generic-x86_64")
	for _, bin := range []string{"qemu-img", "sgdisk", "e2fsck", "dumpe2fs", "partx"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("needs %s (tools/install-deps.sh)", bin)
		}
	}
	state := t.TempDir()
	disk := filepath.Join(state, "disk.img")
	if out, err := exec.Command("cp", "--sparse=always", filepath.Join(img, "disk.img"), disk).CombinedOutput(); err != nil {
		t.Fatalf("copy the disk image: %v\n%s", err, out)
	}
	const size = 2 << 30
	if out, err := exec.Command("qemu-img", "resize", "-q", "-f", "raw", disk, strconv.Itoa(size)).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img resize: %v\n%s", err, out)
	}
	opts := []qemu.Option{
		qemu.WithDisk(disk, 0),
		qemu.WithTPM(filepath.Join(state, "tpm")),
		qemu.WithTimeout(5 * time.Minute),
	}

	vm := qemu.StartT(t, b, img, opts...)
	gatetest.MustSee(t, vm, "init: /perm mounted (/dev/vda2, ext4, boot 1)")
	var perm []string
	for _, l := range vm.Lines() {
		if strings.HasPrefix(l, "init: /perm") || strings.Contains(l, "EXT4-fs") || strings.Contains(l, "vda") {
			perm = append(perm, l)
			t.Logf("boot 1: %s", l)
		}
	}
	for _, re := range []string{
		`^init: /perm: grew partition 2 of /dev/vda from 256 MiB to 1\.9 GiB \(GPT moved to the disk's end\)$`,
		`^init: /perm: /dev/vda2 is blank, formatting ext4$`,
		`^init: /perm: formatted /dev/vda2 \(256 MiB\) in `,
		`^init: /perm: grew the file system on /dev/vda2 from 256 MiB to 1\.9 GiB in `,
	} {
		if !slices.ContainsFunc(perm, regexp.MustCompile(re).MatchString) {
			t.Errorf("boot 1: no line matches %s", re)
		}
	}
	if t.Failed() {
		gatetest.PowerOff(t, vm)
		t.FailNow()
	}
	t.Logf("boot 1: %s", gatetest.MustSee(t, vm, "init: ready ("))
	gatetest.MustSee(t, vm, "identity: identity: first boot: ")
	gatetest.MustSee(t, vm, "statusdump: testsvc: status")
	gatetest.MustSee(t, vm, regexp.MustCompile(`^statusdump: perm\s+/dev/vda2 \(ext4, 1\.9 GiB\), boot 1$`))
	gatetest.MustSee(t, vm, regexp.MustCompile(`^statusdump:\s+grew otgate-perm from 256 MiB to 1\.9 GiB \(GPT moved to the disk's end\) this boot$`))
	gatetest.PowerOff(t, vm)

	// On the host: a GPT sgdisk finds no problem in, the partition to the
	// last usable LBA, a clean ext4 that fills it.
	if out, err := exec.Command("sgdisk", "-v", disk).CombinedOutput(); err != nil || !strings.Contains(string(out), "No problems found") {
		t.Errorf("sgdisk -v after boot 1: %v\n%s", err, out)
	}
	out, err := exec.Command("partx", "-g", "-b", "-o", "NR,START,END,NAME", disk).CombinedOutput()
	if err != nil {
		t.Fatalf("partx: %v\n%s", err, out)
	}
	var start, end int64 = -1, -1
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) == 4 && f[0] == "2" && f[3] == "otgate-perm" {
			start, _ = strconv.ParseInt(f[1], 10, 64)
			end, _ = strconv.ParseInt(f[2], 10, 64)
		}
	}
	if want := int64(size/512 - 34); end != want {
		t.Fatalf("otgate-perm ends at LBA %d, want the last usable LBA %d:\n%s", end, want, out)
	}
	part := disk + "?offset=" + strconv.FormatInt(start*512, 10)
	if out, err := exec.Command("e2fsck", "-fn", part).CombinedOutput(); err != nil {
		t.Errorf("e2fsck -fn after boot 1: %v\n%s", err, out)
	}
	out, _ = exec.Command("dumpe2fs", "-h", part).CombinedOutput()
	m := regexp.MustCompile(`(?m)^Block count:\s+(\d+)$`).FindSubmatch(out)
	bs := regexp.MustCompile(`(?m)^Block size:\s+(\d+)$`).FindSubmatch(out)
	if m == nil || bs == nil {
		t.Fatalf("dumpe2fs:\n%s", out)
	}
	blocks, _ := strconv.ParseInt(string(m[1]), 10, 64)
	bsize, _ := strconv.ParseInt(string(bs[1]), 10, 64)
	if partBytes := (end - start + 1) * 512; blocks != partBytes/bsize {
		t.Errorf("the file system has %d blocks of %d bytes, the partition %d bytes: it does not fill it", blocks, bsize, partBytes)
	}

	vm = qemu.StartT(t, b, img, opts...)
	gatetest.MustSee(t, vm, "init: /perm mounted (/dev/vda2, ext4, boot 2)")
	t.Logf("boot 2: %s", gatetest.MustSee(t, vm, "init: ready ("))
	for _, l := range vm.Lines() {
		if strings.HasPrefix(l, "init: /perm: ") && (strings.Contains(l, "grew") || strings.Contains(l, "grown") || strings.Contains(l, "formatting")) {
			t.Errorf("boot 2 (nothing to grow) logged %q", l)
		}
		if strings.HasPrefix(l, "identity: identity: first boot") {
			t.Errorf("boot 2: %q: the identity boot 1 wrote to the grown /perm is gone", l)
		}
	}
	gatetest.PowerOff(t, vm)
}

// A power cut tore the primary GPT while init grew /perm: the new backup
// is at the disk's end, the primary's entries are new but its header is
// the old one (its entries CRC fails). Linux reads a backup GPT only with
// the "gpt" parameter, so the claim init's write order rests on is the
// firmware's: OVMF (EDK2) finds the primary invalid, boots from the
// backup and rewrites the primary from it, and the gate comes up with
// /perm on the grown partition.
func TestGenericPermGrowTornPrimary(t *testing.T) {
	b, img := gatetest.Image(t, "generic-x86_64")
	for _, bin := range []string{"qemu-img", "sgdisk"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("needs %s (tools/install-deps.sh)", bin)
		}
	}
	state := t.TempDir()
	disk := filepath.Join(state, "disk.img")
	orig := filepath.Join(img, "disk.img")
	if out, err := exec.Command("cp", "--sparse=always", orig, disk).CombinedOutput(); err != nil {
		t.Fatalf("copy the disk image: %v\n%s", err, out)
	}
	const size = 1 << 30
	if out, err := exec.Command("qemu-img", "resize", "-q", "-f", "raw", disk, strconv.Itoa(size)).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img resize: %v\n%s", err, out)
	}
	// The grown layout, written by sgdisk: backup at the end, partition 2
	// (same start, type, GUID and name) to the last usable LBA.
	info, err := exec.Command("sgdisk", "-i", "2", disk).CombinedOutput()
	if err != nil {
		t.Fatalf("sgdisk -i 2: %v\n%s", err, info)
	}
	field := func(name string) string {
		m := regexp.MustCompile(`(?m)^` + name + `: (\S+)`).FindSubmatch(info)
		if m == nil {
			t.Fatalf("sgdisk -i 2: no %s:\n%s", name, info)
		}
		return string(m[1])
	}
	first, guid := field("First sector"), field("Partition unique GUID")
	if out, err := exec.Command("sgdisk", "-e", "-d", "2", "-n", "2:"+first+":"+strconv.Itoa(size/512-34),
		"-t", "2:8300", "-u", "2:"+guid, "-c", "2:otgate-perm", disk).CombinedOutput(); err != nil {
		t.Fatalf("sgdisk: %v\n%s", err, out)
	}
	// The tear: the old primary header over the new one.
	hdr := make([]byte, 512)
	f, err := os.Open(orig)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.ReadAt(hdr, 512)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	w, err := os.OpenFile(disk, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = w.WriteAt(hdr, 512)
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	if out, _ := exec.Command("sgdisk", "-v", disk).CombinedOutput(); strings.Contains(string(out), "No problems found") {
		t.Fatalf("the torn primary GPT verifies:\n%s", out)
	}

	vm := qemu.StartT(t, b, img, qemu.WithDisk(disk, 0), qemu.WithTPM(filepath.Join(state, "tpm")), qemu.WithTimeout(5*time.Minute))
	t.Logf("torn: %s", gatetest.MustSee(t, vm, "init: /perm mounted (/dev/vda2, ext4, boot 1)"))
	for _, l := range vm.Lines() {
		if strings.HasPrefix(l, "init: /perm") {
			t.Logf("torn: %s", l)
		}
	}
	gatetest.MustSee(t, vm, "init: ready (")
	gatetest.PowerOff(t, vm)
	if out, err := exec.Command("sgdisk", "-v", disk).CombinedOutput(); err != nil || !strings.Contains(string(out), "No problems found") {
		t.Errorf("sgdisk -v after the boot: the primary GPT was not restored: %v\n%s", err, out)
	}
}
