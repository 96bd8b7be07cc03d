package image

import (
	"bytes"
	"context"
	encbin "encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestUEFIDiskBoots builds the generic-x86_64 disk with a stand-in init
// twice in different directories, checks both are byte-identical (raw and
// qcow2) and that qemu-img check passes, then boots the raw disk under
// OVMF: firmware -> systemd-boot -> kernel -> initramfs -> the stand-in
// init's marker line, then power-off (QEMU exits).
func TestUEFIDiskBoots(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM")
	}
	needBinary(t, "qemu-img")
	needBinary(t, "qemu-system-x86_64")
	b := testBoard(t, "generic-x86_64")
	if _, err := os.Stat(b.QEMU.Firmware); err != nil {
		t.Skipf("OVMF not installed (Debian ovmf): %v", err)
	}
	pkg := standin(t)
	var dirs []string
	for i := 0; i < 2; i++ {
		out := t.TempDir()
		if _, err := Build(context.Background(), b, WithSourceDir(sourceRoot(t)), WithCacheDir(cacheDir(t)),
			WithOutDir(out), withInitPackage(pkg)); err != nil {
			t.Fatal(err)
		}
		dirs = append(dirs, filepath.Join(out, b.Name))
	}
	if err := compareDirs(dirs[0], dirs[1]); err != nil {
		t.Fatalf("two disk builds differ: %v", err)
	}
	// The qcow2 is qemu-img's output: the manifest names the version.
	if man, err := ReadManifest(dirs[0]); err != nil {
		t.Fatal(err)
	} else if !strings.HasPrefix(man.Inputs.QemuImg, "qemu-img version ") {
		t.Errorf("manifest qemu_img = %q, want qemu-img's version line", man.Inputs.QemuImg)
	}
	if out, err := exec.Command("qemu-img", "check", filepath.Join(dirs[0], QCOW2File)).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img check: %v\n%s", err, out)
	}
	if out, err := exec.Command("qemu-img", "compare", "-f", "raw", "-F", "qcow2",
		filepath.Join(dirs[0], DiskFile), filepath.Join(dirs[0], QCOW2File)).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img compare raw qcow2: %v\n%s", err, out)
	}

	vars := filepath.Join(t.TempDir(), "OVMF_VARS.fd")
	tmpl, err := os.ReadFile(b.QEMU.VarsTemplate)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(vars, tmpl, 0o644)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, b.QEMU.Binary, "-M", b.QEMU.Machine, "-cpu", b.QEMU.CPU, "-m", b.QEMU.Memory,
		"-nographic", "-no-reboot",
		"-drive", "if=pflash,format=raw,readonly=on,file="+b.QEMU.Firmware,
		"-drive", "if=pflash,format=raw,file="+vars,
		"-drive", "file="+filepath.Join(dirs[0], DiskFile)+",format=raw,if=virtio,snapshot=on")
	var console bytes.Buffer
	cmd.Stdout, cmd.Stderr = &console, &console
	start := time.Now()
	err = cmd.Run()
	log := strings.ReplaceAll(console.String(), "\r", "")
	if !strings.Contains(log, "otgate-image-test: stand-in init running") {
		t.Fatalf("no init marker on the serial console (qemu: %v):\n%s", err, log)
	}
	if err != nil {
		t.Fatalf("qemu did not exit cleanly after the stand-in init powered off: %v\n%s", err, log)
	}
	t.Logf("UEFI boot to init and power-off in %.1fs", time.Since(start).Seconds())
}

// The ESP's directories in the root have a ".." entry pointing to cluster
// 0, as the FAT specification says (go-diskfs writes the root's cluster;
// fsck.fat reports "Invalid '..' entry" and would rewrite it), and
// fsck.fat, where installed, finds nothing to fix.
func TestESPRootDirectoriesDotDot(t *testing.T) {
	dst := filepath.Join(t.TempDir(), "disk.img")
	files := []espFile{
		{"/EFI/BOOT/BOOTX64.EFI", []byte("efi")},
		{"/loader/loader.conf", []byte("timeout 0\n")},
		{"/loader/entries/otgate.conf", []byte("title otgate\n")},
		{"/otgate/kernel", bytes.Repeat([]byte{1}, 5000)},
	}
	if err := writeDisk(context.Background(), dst, "test-board", files); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	bs := make([]byte, 512)
	f.ReadAt(bs, espStart)
	le := encbin.LittleEndian
	bps, spc := int64(le.Uint16(bs[11:])), int64(bs[13])
	dataStart := espStart + (int64(le.Uint16(bs[14:]))+int64(bs[16])*int64(le.Uint32(bs[36:])))*bps
	cluster := func(c uint32) []byte {
		b := make([]byte, bps*spc)
		f.ReadAt(b, dataStart+int64(c-2)*bps*spc)
		return b
	}
	root := cluster(le.Uint32(bs[44:]))
	dirs := 0
	for i := 0; i+32 <= len(root) && root[i] != 0; i += 32 {
		e := root[i : i+32]
		if e[11] == 0x0f || e[11]&0x10 == 0 || e[0] == 0xe5 {
			continue
		}
		dirs++
		dd := cluster(uint32(le.Uint16(e[20:]))<<16 | uint32(le.Uint16(e[26:])))[32:64]
		name := strings.TrimSpace(string(e[:11]))
		if string(dd[:2]) != ".." {
			t.Errorf("%s: second entry %q, want ..", name, dd[:11])
		} else if c := uint32(le.Uint16(dd[20:]))<<16 | uint32(le.Uint16(dd[26:])); c != 0 {
			t.Errorf("%s: .. points to cluster %d, want 0 (the root)", name, c)
		}
	}
	if dirs != 3 {
		t.Errorf("%d directories in the ESP root, want 3 (EFI, loader, otgate)", dirs)
	}
	if _, err := exec.LookPath("fsck.fat"); err != nil {
		t.Logf("fsck.fat not installed (Debian dosfstools): not run")
		return
	}
	esp := filepath.Join(t.TempDir(), "esp.img")
	part := make([]byte, espSize)
	f.ReadAt(part, espStart)
	os.WriteFile(esp, part, 0o644)
	out, err := exec.Command("fsck.fat", "-n", esp).CombinedOutput()
	if err != nil || strings.Contains(string(out), "Fixing") || strings.Contains(string(out), "Invalid") {
		t.Errorf("fsck.fat -n: %v\n%s", err, out)
	}
}
