package boot

import (
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/partition/gpt"

	"github.com/otgate/otgate/image"
	"github.com/otgate/otgate/integration/internal/gatetest"
	"github.com/otgate/otgate/qemu"
)

// generic-x86_64 on an eMMC unit: the firmware boots the ESP, but Linux
// sees the eMMC only through an SD host controller driver (sdhci-pci on
// Atom, Apollo Lake, Elkhart Lake and later) and mmc_block; without them
// /perm falls back to tmpfs and the gate forgets everything at every
// boot. OVMF cannot boot from an SD card, so the boot disk stays virtio
// and the persistent partition moves to an SD card behind QEMU's
// sdhci-pci controller (the same driver path as an eMMC): the boot disk's
// own partition is renamed, so init can only find otgate-perm on the
// card. It must format the blank partition there, mount it, and come up.
func TestGenericPermOnSDHCI(t *testing.T) {
	b, img := gatetest.Image(t, "generic-x86_64")
	state := t.TempDir()
	disk := filepath.Join(state, "disk.img")
	if out, err := exec.Command("cp", "--sparse=always", filepath.Join(img, "disk.img"), disk).CombinedOutput(); err != nil {
		t.Fatalf("copy the disk image: %v\n%s", err, out)
	}
	renamePartition(t, disk, image.PermPartitionName, "otgate-perm-unused")

	// QEMU's sd-card wants a power-of-two size.
	card := filepath.Join(state, "sd.img")
	const cardSize = 64 << 20
	d, err := diskfs.Create(card, cardSize, diskfs.SectorSize512)
	if err != nil {
		t.Fatalf("create %s: %v", card, err)
	}
	err = d.Partition(&gpt.Table{
		LogicalSectorSize: 512, PhysicalSectorSize: 512, ProtectiveMBR: true,
		Partitions: []*gpt.Partition{{
			Index: 1, Start: 2048, End: cardSize/512 - 34, Type: gpt.LinuxFilesystem, Name: image.PermPartitionName,
		}},
	})
	d.Close()
	if err != nil {
		t.Fatalf("partition %s: %v", card, err)
	}

	vm := qemu.StartT(t, b, img,
		qemu.WithDisk(disk, 0),
		qemu.WithTPM(filepath.Join(state, "tpm")),
		qemu.WithTimeout(5*time.Minute),
		qemu.WithQEMUArgs("-device", "sdhci-pci",
			"-drive", "if=none,id=card,format=raw,file="+card,
			"-device", "sd-card,drive=card"),
	)
	gatetest.MustSee(t, vm, regexp.MustCompile(`^init: /perm: /dev/mmcblk\d+p1 is blank, formatting ext4`))
	t.Logf("sdhci: %s", gatetest.MustSee(t, vm, regexp.MustCompile(`^init: /perm mounted \(/dev/mmcblk\d+p1, ext4, boot 1\)`)))
	t.Logf("sdhci: %s", gatetest.MustSee(t, vm, "init: ready ("))
	gatetest.PowerOff(t, vm)
}

// renamePartition gives the GPT partition named from the name to.
func renamePartition(t *testing.T, path, from, to string) {
	t.Helper()
	d, err := diskfs.Open(path)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	defer d.Close()
	pt, err := d.GetPartitionTable()
	if err != nil {
		t.Fatalf("%s: partition table: %v", path, err)
	}
	table, ok := pt.(*gpt.Table)
	if !ok {
		t.Fatalf("%s: partition table %T, want GPT", path, pt)
	}
	found := false
	for _, p := range table.Partitions {
		if p.Name == from {
			p.Name, found = to, true
		}
	}
	if !found {
		t.Fatalf("%s: no partition named %s", path, from)
	}
	if err := d.Partition(table); err != nil {
		t.Fatalf("%s: write partition table: %v", path, err)
	}
}
