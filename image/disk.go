package image

import (
	"bytes"
	"context"
	"crypto/sha256"
	encbin "encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/disk"
	"github.com/diskfs/go-diskfs/filesystem"
	"github.com/diskfs/go-diskfs/partition/gpt"
)

// GPT layout of UEFI disk images (512-byte sectors).
const (
	sectorSize = 512
	mib        = 1 << 20
	espStart   = 1 * mib   // after the protective MBR and primary GPT
	espSize    = 128 * mib // kernel + initramfs + systemd-boot, with room
	// permSize is the persistent partition as built: init formats it
	// on first boot and grows it to the end of the disk the image is
	// written to (init/permgrow.go), so it must stay the last partition.
	permSize = 256 * mib
	// diskSize leaves 1 MiB after the last partition for the backup GPT.
	diskSize = espStart + espSize + permSize + 1*mib

	// PermPartitionName is the GPT name of the persistent partition
	// (boards find it as PARTLABEL=otgate-perm).
	PermPartitionName = "otgate-perm"

	// fatEpoch is the timestamp of every file on the ESP:
	// 1980-01-01T00:00:00Z, the first instant FAT can represent.
	fatEpoch = 315532800
)

// espFile is one file on the EFI system partition.
type espFile struct {
	path string // absolute, '/'-separated
	data []byte
}

// diskGUID derives a fixed, board-specific GUID (RFC 4122 version 4
// layout) so the disk image is reproducible.
func diskGUID(boardName, what string) string {
	s := sha256.Sum256([]byte("otgate disk " + boardName + " " + what))
	s[6] = s[6]&0x0f | 0x40
	s[8] = s[8]&0x3f | 0x80
	return fmt.Sprintf("%X-%X-%X-%X-%X", s[0:4], s[4:6], s[6:8], s[8:10], s[10:16])
}

// fatTimeMu serializes disk writes: go-diskfs takes FAT timestamps from
// the process environment (SOURCE_DATE_EPOCH).
var fatTimeMu sync.Mutex

// writeDisk writes a raw GPT disk image to dst: partition 1 is the EFI
// system partition (FAT32) holding files, partition 2 the unformatted
// persistent partition named PermPartitionName.
func writeDisk(ctx context.Context, dst, boardName string, files []espFile) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	fatTimeMu.Lock()
	defer fatTimeMu.Unlock()
	old, had := os.LookupEnv("SOURCE_DATE_EPOCH")
	os.Setenv("SOURCE_DATE_EPOCH", strconv.Itoa(fatEpoch))
	defer func() {
		if had {
			os.Setenv("SOURCE_DATE_EPOCH", old)
		} else {
			os.Unsetenv("SOURCE_DATE_EPOCH")
		}
	}()

	if err := writeDiskfs(dst, boardName, files); err != nil {
		return err
	}
	if err := fixRootDotDot(dst, espStart); err != nil {
		return fmt.Errorf("disk image %s: EFI system partition: %w", dst, err)
	}
	return nil
}

// writeDiskfs lays the disk out with go-diskfs.
func writeDiskfs(dst, boardName string, files []espFile) error {
	d, err := diskfs.Create(dst, diskSize, diskfs.SectorSize512)
	if err != nil {
		return fmt.Errorf("disk image %s: %w", dst, err)
	}
	defer d.Close()
	espFirst := uint64(espStart / sectorSize)
	permFirst := espFirst + espSize/sectorSize
	table := &gpt.Table{
		LogicalSectorSize:  sectorSize,
		PhysicalSectorSize: sectorSize,
		ProtectiveMBR:      true,
		GUID:               diskGUID(boardName, "disk"),
		Partitions: []*gpt.Partition{
			{Index: 1, Start: espFirst, End: permFirst - 1, Type: gpt.EFISystemPartition,
				Name: "EFI System", GUID: diskGUID(boardName, "esp")},
			{Index: 2, Start: permFirst, End: permFirst + permSize/sectorSize - 1, Type: gpt.LinuxFilesystem,
				Name: PermPartitionName, GUID: diskGUID(boardName, "perm")},
		},
	}
	if err := d.Partition(table); err != nil {
		return fmt.Errorf("disk image %s: partition: %w", dst, err)
	}
	fs, err := d.CreateFilesystem(disk.FilesystemSpec{
		Partition: 1, FSType: filesystem.TypeFat32, VolumeLabel: "OTGATE-ESP", Reproducible: true,
	})
	if err != nil {
		return fmt.Errorf("disk image %s: EFI system partition: %w", dst, err)
	}
	sort.Slice(files, func(i, j int) bool { return files[i].path < files[j].path })
	made := map[string]bool{}
	for _, f := range files {
		if dir := path.Dir(f.path); dir != "/" && !made[dir] {
			if err := fs.Mkdir(dir); err != nil {
				return fmt.Errorf("disk image %s: mkdir %s: %w", dst, dir, err)
			}
			made[dir] = true
		}
		w, err := fs.OpenFile(f.path, os.O_CREATE|os.O_RDWR)
		if err != nil {
			return fmt.Errorf("disk image %s: create %s: %w", dst, f.path, err)
		}
		if _, err := w.Write(f.data); err != nil {
			w.Close()
			return fmt.Errorf("disk image %s: write %s: %w", dst, f.path, err)
		}
		if err := w.Close(); err != nil {
			return fmt.Errorf("disk image %s: close %s: %w", dst, f.path, err)
		}
	}
	return nil
}

// qcow2Options pins every qcow2 creation option (the defaults of qemu-img
// 5.2 to 9.x) instead of taking the defaults of whatever qemu-img runs.
const qcow2Options = "compat=1.1,cluster_size=65536,refcount_bits=16,lazy_refcounts=off," +
	"extended_l2=off,compression_type=zlib,preallocation=off"

// fixRootDotDot corrects what go-diskfs writes in the ".." entry of a
// directory in the root of a FAT32 file system: the root's cluster
// number, where the FAT specification (and fsck.fat, which reports
// "Invalid '..' entry" and would rewrite it) wants 0. The FAT32 file
// system starts at byte off of the image file.
func fixRootDotDot(image string, off int64) error {
	f, err := os.OpenFile(image, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	bs := make([]byte, 512)
	if _, err := f.ReadAt(bs, off); err != nil {
		return err
	}
	le := encbin.LittleEndian
	bps := int64(le.Uint16(bs[11:]))
	spc := int64(bs[13])
	reserved := int64(le.Uint16(bs[14:]))
	fats := int64(bs[16])
	fatSize := int64(le.Uint32(bs[36:]))
	root := le.Uint32(bs[44:])
	if bps == 0 || spc == 0 || fats == 0 || fatSize == 0 || root < 2 || bs[510] != 0x55 || bs[511] != 0xaa {
		return errors.New("not a FAT32 boot sector")
	}
	clusterBytes := bps * spc
	dataStart := off + (reserved+fats*fatSize)*bps
	clusterAt := func(c uint32) int64 { return dataStart + int64(c-2)*clusterBytes }
	next := func(c uint32) (uint32, error) {
		var e [4]byte
		if _, err := f.ReadAt(e[:], off+reserved*bps+int64(c)*4); err != nil {
			return 0, err
		}
		return le.Uint32(e[:]) & 0x0fffffff, nil
	}
	buf := make([]byte, clusterBytes)
	for c, n := root, 0; c >= 2 && c < 0x0ffffff8; n++ {
		if n > 1<<16 {
			return errors.New("root directory cluster chain does not end")
		}
		if _, err := f.ReadAt(buf, clusterAt(c)); err != nil {
			return err
		}
		for i := int64(0); i+32 <= clusterBytes; i += 32 {
			e := buf[i : i+32]
			switch {
			case e[0] == 0:
				return nil // end of the directory
			case e[0] == 0xe5, e[11] == 0x0f, e[11]&0x08 != 0, e[11]&0x10 == 0, e[0] == '.':
				continue // deleted, long name, volume label, file, dot entry
			}
			sub := uint32(le.Uint16(e[20:]))<<16 | uint32(le.Uint16(e[26:]))
			if sub < 2 {
				continue
			}
			var dd [32]byte
			at := clusterAt(sub) + 32 // the second entry of the subdirectory
			if _, err := f.ReadAt(dd[:], at); err != nil {
				return err
			}
			if string(dd[:11]) != "..         " || dd[11]&0x10 == 0 {
				return fmt.Errorf("directory %q: second entry is not \"..\"", bytes.TrimRight(e[:11], " "))
			}
			if le.Uint16(dd[20:]) == 0 && le.Uint16(dd[26:]) == 0 {
				continue
			}
			le.PutUint16(dd[20:], 0)
			le.PutUint16(dd[26:], 0)
			if _, err := f.WriteAt(dd[:], at); err != nil {
				return err
			}
		}
		if c, err = next(c); err != nil {
			return err
		}
	}
	return nil
}

// writeQCOW2 converts the raw image src to qcow2 at dst with qemu-img
// (qemu-utils) and returns qemu-img's version line, an input of the
// artifact: the bytes depend on the raw image, qcow2Options and the
// qemu-img that wrote them.
func writeQCOW2(ctx context.Context, src, dst string) (string, error) {
	ver, err := exec.CommandContext(ctx, "qemu-img", "--version").Output()
	if err != nil {
		return "", fmt.Errorf("qemu-img --version: %w", err)
	}
	version, _, _ := strings.Cut(string(ver), "\n")
	if err := runIn(ctx, "", nil, "qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", "-o", qcow2Options, src, dst); err != nil {
		return "", err
	}
	for _, p := range []string{src, dst} {
		if err := syncFile(p); err != nil {
			return "", err
		}
	}
	return strings.TrimSpace(version), nil
}

func syncFile(name string) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
