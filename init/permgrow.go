package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Growing /perm to fill its disk. The generic-x86_64 image is ~385 MiB
// with a 256 MiB otgate-perm partition; a plant engineer dd's it onto a
// 16-128 GB eMMC or SSD, and the audit log on /perm grows without bound.
// So, like growpart + resize2fs on cloud images, init grows it on the
// first boot that finds room:
//
//  1. before the mount (growPermPartition): when otgate-perm is the last
//     partition of a GPT disk with more than permGrowMin after it, the
//     GPT is rewritten with the backup header and entries at the disk's
//     end and the partition extended to the last usable LBA, then the
//     kernel is told the new size (BLKPG_RESIZE_PARTITION, one
//     partition, whatever else of the disk is open; BLKRRPART drops and
//     re-reads them all and fails with EBUSY while any is open: init
//     mounts nothing else of the disk, not even the ESP, today);
//  2. after the mount (growPermFS): an ext4 smaller than its device by
//     more than permGrowMin is grown online (EXT4_IOC_RESIZE_FS, the
//     kernel's journalled resize, what resize2fs does on a mounted file
//     system). On the qemu boards /perm is a whole virtio disk: a disk
//     made bigger (qemu-img resize) takes this step alone.
//
// Power cuts: the GPT writes are ordered so that at every moment a valid
// GPT describes a consistent layout (the old one, or the new one whose
// partition holds the old, smaller file system): first the new backup at
// the disk's end (the old primary and old backup still rule), then the
// primary (header and entries in one write; if the device tears it, the
// new backup at the end is valid and the UEFI firmware, which checks the
// backup when the primary fails, boots from it and EDK2 rewrites the
// primary from it before Linux starts: Linux reads a backup GPT only
// with the "gpt" parameter), then the stale old backup header is zeroed,
// and a protective MBR's size is set to the new disk's. A boot
// after a cut anywhere finds either room to grow again (the whole
// procedure runs again and converges) or a partition bigger than its
// file system (step 2). Nothing ever shrinks.
//
// A boot with nothing to grow reads a few sysfs numbers and one
// superblock, and logs nothing.

// permGrowMin is the least room worth growing into: less is left alone
// (a disk a few MiB bigger than the image, rounding of a partition's end).
const permGrowMin = 16 << 20

// GPT constants (UEFI specification 2.10, 5.3).
const (
	gptSignature  = "EFI PART"
	gptRevision   = 0x00010000
	gptHeaderSize = 92
	gptEntrySize  = 128
)

// EXT4_IOC_RESIZE_FS, _IOW('f', 16, __u64) (linux/fs/ext4/ext4.h).
const ext4IocResizeFS = 0x40086610

// gptHeader is the part of a GPT header this code reads and changes.
type gptHeader struct {
	raw                   []byte // the whole header sector
	my, alt               uint64
	firstUsable           uint64
	lastUsable            uint64
	entriesLBA            uint64
	numEntries, entrySize uint32
}

func parseGPTHeader(sec []byte) (gptHeader, error) {
	le := binary.LittleEndian
	h := gptHeader{raw: sec}
	if string(sec[:8]) != gptSignature {
		return h, errors.New("no GPT signature")
	}
	size := le.Uint32(sec[12:])
	if le.Uint32(sec[8:]) != gptRevision || size < gptHeaderSize || int(size) > len(sec) {
		return h, fmt.Errorf("GPT revision %#x, header size %d: not supported", le.Uint32(sec[8:]), size)
	}
	if want, got := le.Uint32(sec[16:]), gptHeaderCRC(sec); want != got {
		return h, fmt.Errorf("header CRC32 %08x, computed %08x", want, got)
	}
	h.my, h.alt = le.Uint64(sec[24:]), le.Uint64(sec[32:])
	h.firstUsable, h.lastUsable = le.Uint64(sec[40:]), le.Uint64(sec[48:])
	h.entriesLBA = le.Uint64(sec[72:])
	h.numEntries, h.entrySize = le.Uint32(sec[80:]), le.Uint32(sec[84:])
	if h.entrySize != gptEntrySize || h.numEntries == 0 || h.numEntries > 1024 {
		return h, fmt.Errorf("%d entries of %d bytes: not supported", h.numEntries, h.entrySize)
	}
	if h.firstUsable > h.lastUsable {
		return h, fmt.Errorf("first usable LBA %d after last usable LBA %d", h.firstUsable, h.lastUsable)
	}
	return h, nil
}

// gptHeaderCRC is the CRC32 of the header with its CRC field zeroed.
func gptHeaderCRC(sec []byte) uint32 {
	size := binary.LittleEndian.Uint32(sec[12:])
	h := append([]byte(nil), sec[:size]...)
	binary.LittleEndian.PutUint32(h[16:], 0)
	return crc32.ChecksumIEEE(h)
}

// seal writes the fields of h that change into h.raw and
// recomputes the header CRC over entries.
func (h *gptHeader) seal(entries []byte) {
	le := binary.LittleEndian
	le.PutUint64(h.raw[24:], h.my)
	le.PutUint64(h.raw[32:], h.alt)
	le.PutUint64(h.raw[48:], h.lastUsable)
	le.PutUint64(h.raw[72:], h.entriesLBA)
	le.PutUint32(h.raw[88:], crc32.ChecksumIEEE(entries))
	le.PutUint32(h.raw[16:], gptHeaderCRC(h.raw))
}

// gptDisk is an open disk whose GPT is read.
type gptDisk struct {
	f       *os.File
	name    string // /dev/sda, for messages
	lbs     int64  // logical block size
	lastLBA uint64
}

func (d *gptDisk) read(lba uint64, n int64) ([]byte, error) {
	b := make([]byte, n*d.lbs)
	if _, err := d.f.ReadAt(b, int64(lba)*d.lbs); err != nil {
		return nil, fmt.Errorf("read %s LBA %d: %w", d.name, lba, err)
	}
	return b, nil
}

func (d *gptDisk) entrySectors(h gptHeader) int64 {
	return (int64(h.numEntries)*int64(h.entrySize) + d.lbs - 1) / d.lbs
}

// readGPT reads and verifies the GPT header at lba and its entries.
func (d *gptDisk) readGPT(lba uint64) (gptHeader, []byte, error) {
	sec, err := d.read(lba, 1)
	if err != nil {
		return gptHeader{}, nil, err
	}
	h, err := parseGPTHeader(sec)
	if err != nil {
		return h, nil, err
	}
	if h.my != lba {
		return h, nil, fmt.Errorf("header says it is at LBA %d", h.my)
	}
	n := d.entrySectors(h)
	if h.alt > d.lastLBA || h.lastUsable >= d.lastLBA || h.entriesLBA+uint64(n)-1 > d.lastLBA {
		return h, nil, fmt.Errorf("describes a disk bigger than this one (%d sectors)", d.lastLBA+1)
	}
	sectors, err := d.read(h.entriesLBA, n)
	if err != nil {
		return h, nil, err
	}
	entries := sectors[:int(h.numEntries)*int(h.entrySize)]
	if want, got := binary.LittleEndian.Uint32(sec[88:]), crc32.ChecksumIEEE(entries); want != got {
		return h, nil, fmt.Errorf("partition entries CRC32 %08x, computed %08x", want, got)
	}
	return h, sectors, nil
}

func (d *gptDisk) write(lba uint64, b []byte) error {
	if _, err := d.f.WriteAt(b, int64(lba)*d.lbs); err != nil {
		return fmt.Errorf("write %s LBA %d: %w", d.name, lba, err)
	}
	// fsync of a block device writes its cache and flushes the disk's.
	if err := d.f.Sync(); err != nil {
		return fmt.Errorf("flush %s: %w", d.name, err)
	}
	return nil
}

// partInfo is a partition as sysfs shows it.
type partInfo struct {
	disk       string // /dev/sda
	number     int    // 2
	start, end uint64 // in the disk's logical blocks
	lbs        int64
	diskBytes  int64
}

// sysPartition reads what the kernel knows of the partition dev (a path
// in devDir). ok is false for a whole disk (or a device sysfs does not
// show as a partition).
func sysPartition(dev, sysDir, devDir string) (p partInfo, ok bool, err error) {
	name := filepath.Base(dev)
	sys := filepath.Join(sysDir, "class/block", name)
	num, err := readSysInt(filepath.Join(sys, "partition"))
	if errors.Is(err, os.ErrNotExist) {
		return p, false, nil
	}
	if err != nil {
		return p, false, err
	}
	// /sys/class/block/sda2 links to .../block/sda/sda2.
	real, err := filepath.EvalSymlinks(sys)
	if err != nil {
		return p, false, err
	}
	diskSys := filepath.Dir(real)
	var v [4]int64
	for i, f := range []string{filepath.Join(sys, "start"), filepath.Join(sys, "size"),
		filepath.Join(diskSys, "size"), filepath.Join(diskSys, "queue/logical_block_size")} {
		if v[i], err = readSysInt(f); err != nil {
			return p, false, err
		}
	}
	// sysfs counts 512-byte sectors whatever the logical block size.
	lbs := v[3]
	if lbs < 512 || lbs > 4096 || lbs&(lbs-1) != 0 || v[1] == 0 {
		return p, false, fmt.Errorf("%s: logical block size %d, %d sectors", sys, lbs, v[1])
	}
	s := lbs / 512
	p = partInfo{
		disk: filepath.Join(devDir, filepath.Base(diskSys)), number: int(num),
		start: uint64(v[0] / s), end: uint64((v[0]+v[1])/s - 1),
		lbs: lbs, diskBytes: v[2] * 512,
	}
	return p, true, nil
}

func readSysInt(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return n, nil
}

// permGrowth is what growPermPartition did.
type permGrowth struct {
	from, to int64 // partition bytes; zero: not grown
}

// growPermPartition grows the partition dev (not yet mounted) to the end
// of its disk when it is the last partition and there is room (see the
// top of this file). It logs what it did or, when there is room but it
// cannot grow safely, why not; with no room it logs nothing. Every
// failure is contained: /perm is mounted as it is.
func growPermPartition(log *logger, dev, sysDir, devDir string) permGrowth {
	p, ok, err := sysPartition(dev, sysDir, devDir)
	if err != nil {
		log.Printf("/perm: not grown: %v", err)
		return permGrowth{}
	}
	if !ok || p.diskBytes-int64(p.end+1)*p.lbs < permGrowMin {
		return permGrowth{} // a whole disk, or nothing to grow into: the usual boot
	}
	g, err := growGPTPartition(p, dev)
	switch {
	case err != nil && g.to == 0:
		log.Printf("/perm: not grown: %v; nothing changed", err)
	case err != nil:
		log.Printf("/perm: partition %d of %s: %v", p.number, p.disk, err)
	default:
		log.Printf("/perm: grew partition %d of %s from %s to %s (GPT moved to the disk's end)", p.number, p.disk, sizeText(g.from), sizeText(g.to))
	}
	return g
}

// growGPTPartition does the work of growPermPartition; an error before
// the first write means nothing was changed.
func growGPTPartition(p partInfo, dev string) (permGrowth, error) {
	// Only a blank partition (first boot: formatted after this, at its
	// new size) or a clean ext4 grows: anything else is for a human.
	switch content, err := probeDisk(dev); {
	case err != nil:
		return permGrowth{}, err
	case content == diskExt4:
		if err := ext4Clean(dev); err != nil {
			return permGrowth{}, err
		}
	case content != diskBlank:
		return permGrowth{}, fmt.Errorf("%s holds %s", dev, content)
	}
	f, err := os.OpenFile(p.disk, os.O_RDWR, 0)
	if err != nil {
		return permGrowth{}, err
	}
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return permGrowth{}, fmt.Errorf("size of %s: %w", p.disk, err)
	}
	d := &gptDisk{f: f, name: p.disk, lbs: p.lbs, lastLBA: uint64(size/p.lbs) - 1}
	plan, err := planGPTGrowth(d, p)
	if err != nil {
		return permGrowth{}, err
	}
	if err := plan.apply(d); err != nil {
		return permGrowth{}, fmt.Errorf("%v (a valid GPT, old or new, is on the disk)", err)
	}
	g := permGrowth{from: int64(p.end-p.start+1) * p.lbs, to: int64(plan.newEnd-p.start+1) * p.lbs}
	if err := blkpgResize(f, p, g.to); err != nil {
		// The disk is right; the kernel reads the new table at the
		// next boot, which grows the file system then.
		return g, fmt.Errorf("the GPT is grown but the kernel keeps the old size until the next boot: %w", err)
	}
	return g, nil
}

// gptPlan is a verified GPT and its grown successor.
type gptPlan struct {
	old             gptHeader
	primary, backup gptHeader
	entries         []byte // new entry sectors
	newEnd          uint64
}

// planGPTGrowth reads and verifies both GPTs of d and computes the grown
// one, or says why the partition p cannot grow. It writes nothing.
func planGPTGrowth(d *gptDisk, p partInfo) (*gptPlan, error) {
	h, entries, err := d.readGPT(1)
	if err != nil {
		return nil, fmt.Errorf("%s: primary GPT does not verify: %w", d.name, err)
	}
	bh, bentries, err := d.readGPT(h.alt)
	if err != nil {
		return nil, fmt.Errorf("%s: backup GPT (LBA %d) does not verify: %w", d.name, h.alt, err)
	}
	used := int(h.numEntries) * int(h.entrySize)
	if bh.alt != 1 || !bytes.Equal(bh.raw[56:72], h.raw[56:72]) || bh.firstUsable != h.firstUsable ||
		bh.lastUsable != h.lastUsable || bh.numEntries != h.numEntries || !bytes.Equal(bentries[:used], entries[:used]) {
		return nil, fmt.Errorf("%s: the backup GPT (LBA %d) differs from the primary", d.name, h.alt)
	}
	le := binary.LittleEndian
	zero := make([]byte, 16)
	idx := -1
	for i := 0; i < int(h.numEntries); i++ {
		e := entries[i*gptEntrySize : (i+1)*gptEntrySize]
		if bytes.Equal(e[:16], zero) {
			continue
		}
		start, end := le.Uint64(e[32:]), le.Uint64(e[40:])
		if start == p.start {
			if end != p.end {
				return nil, fmt.Errorf("%s: partition %d ends at LBA %d in the GPT, at %d for the kernel", d.name, i+1, end, p.end)
			}
			idx = i
		}
	}
	if idx < 0 {
		return nil, fmt.Errorf("%s: no GPT entry starts at LBA %d (partition %d)", d.name, p.start, p.number)
	}
	n := d.entrySectors(h)
	newLastUsable := d.lastLBA - 1 - uint64(n)
	for i := 0; i < int(h.numEntries); i++ {
		e := entries[i*gptEntrySize : (i+1)*gptEntrySize]
		if i == idx || bytes.Equal(e[:16], zero) {
			continue
		}
		if start, end := le.Uint64(e[32:]), le.Uint64(e[40:]); end >= p.start && start <= newLastUsable {
			return nil, fmt.Errorf("%s: partition %d (%q, LBA %d-%d) lies after otgate-perm (partition %d): it is not the disk's last", d.name, i+1, gptName(e), start, end, idx+1)
		}
	}
	if h.entriesLBA+uint64(n) > h.firstUsable || h.firstUsable > p.start {
		return nil, fmt.Errorf("%s: primary partition entries (LBA %d, %d sectors) overlap the usable space from LBA %d", d.name, h.entriesLBA, n, h.firstUsable)
	}
	if newLastUsable <= h.lastUsable || newLastUsable <= p.end {
		return nil, fmt.Errorf("%s: no room after partition %d (last usable LBA %d, disk's %d)", d.name, idx+1, h.lastUsable, newLastUsable)
	}

	ne := append([]byte(nil), entries...)
	le.PutUint64(ne[idx*gptEntrySize+40:], newLastUsable)
	pl := &gptPlan{old: h, entries: ne, newEnd: newLastUsable}
	pl.primary = h
	pl.primary.raw = append([]byte(nil), h.raw...)
	pl.primary.alt, pl.primary.lastUsable = d.lastLBA, newLastUsable
	pl.primary.seal(ne[:used])
	pl.backup = pl.primary
	pl.backup.raw = append([]byte(nil), h.raw...)
	pl.backup.my, pl.backup.alt = d.lastLBA, 1
	pl.backup.entriesLBA = d.lastLBA - uint64(n)
	pl.backup.seal(ne[:used])
	return pl, nil
}

// apply writes the plan in the order that keeps a valid GPT on the disk
// at every moment (top of this file).
func (pl *gptPlan) apply(d *gptDisk) error {
	// 1. The new backup: its entries, then its header, at the disk's end
	// (one write, one flush). The old primary and old backup still rule.
	if err := d.write(pl.backup.entriesLBA, append(append([]byte(nil), pl.entries...), pl.backup.raw...)); err != nil {
		return err
	}
	// 2. The new primary. Header and entries are usually adjacent (LBA 1
	// and 2-33): one write, in one 4 KiB flash page for the sector that
	// changes; should it tear, step 1's backup describes the new layout.
	if pl.primary.entriesLBA == 2 {
		if err := d.write(1, append(append([]byte(nil), pl.primary.raw...), pl.entries...)); err != nil {
			return err
		}
	} else {
		if err := d.write(pl.primary.entriesLBA, pl.entries); err != nil {
			return err
		}
		if err := d.write(1, pl.primary.raw); err != nil {
			return err
		}
	}
	// 3. The old backup header is now inside the grown partition, past
	// its file system's end: zero it so no tool finds a second, stale
	// GPT there.
	if pl.old.alt != pl.primary.alt {
		if err := d.write(pl.old.alt, make([]byte, d.lbs)); err != nil {
			return err
		}
	}
	// 4. A protective MBR (one 0xEE entry from LBA 1) covers the disk.
	mbr, err := d.read(0, 1)
	if err != nil {
		return err
	}
	le := binary.LittleEndian
	want := uint32(0xffffffff)
	if d.lastLBA < uint64(want) {
		want = uint32(d.lastLBA)
	}
	if mbr[510] == 0x55 && mbr[511] == 0xaa && mbr[446+4] == 0xee && le.Uint32(mbr[446+8:]) == 1 &&
		bytes.Count(mbr[446+16:510], []byte{0}) == 48 && le.Uint32(mbr[446+12:]) != want {
		le.PutUint32(mbr[446+12:], want)
		if err := d.write(0, mbr); err != nil {
			return err
		}
	}
	return nil
}

// gptName is an entry's name (UTF-16LE, ASCII enough for messages).
func gptName(e []byte) string {
	var b strings.Builder
	for i := 56; i+1 < gptEntrySize; i += 2 {
		c := binary.LittleEndian.Uint16(e[i:])
		if c == 0 {
			break
		}
		if c < 0x80 {
			b.WriteByte(byte(c))
		} else {
			b.WriteByte('?')
		}
	}
	return b.String()
}

// blkpgResize tells the kernel partition p of the open disk f is now
// size bytes (BLKPG_RESIZE_PARTITION: the start stays).
func blkpgResize(f *os.File, p partInfo, size int64) error {
	part := unix.BlkpgPartition{Start: int64(p.start) * p.lbs, Length: size, Pno: int32(p.number)}
	arg := unix.BlkpgIoctlArg{Op: unix.BLKPG_RESIZE_PARTITION, Datalen: int32(unsafe.Sizeof(part)), Data: (*byte)(unsafe.Pointer(&part))}
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.BLKPG, uintptr(unsafe.Pointer(&arg))); e != 0 {
		return fmt.Errorf("BLKPG_RESIZE_PARTITION %s partition %d: %w", p.disk, p.number, e)
	}
	return nil
}

// ext4Super is what growPermFS reads of an ext4 superblock.
type ext4Super struct {
	blocks    uint64
	blockSize int64
	state     uint16
}

func readExt4Super(dev string) (ext4Super, error) {
	f, err := os.Open(dev)
	if err != nil {
		return ext4Super{}, err
	}
	defer f.Close()
	var sb [1024]byte
	if _, err := f.ReadAt(sb[:], 1024); err != nil {
		return ext4Super{}, fmt.Errorf("read %s superblock: %w", dev, err)
	}
	le := binary.LittleEndian
	if le.Uint16(sb[0x38:]) != 0xEF53 {
		return ext4Super{}, fmt.Errorf("%s: no ext4 superblock", dev)
	}
	s := ext4Super{blocks: uint64(le.Uint32(sb[0x04:])), blockSize: 1024 << le.Uint32(sb[0x18:]), state: le.Uint16(sb[0x3a:])}
	if le.Uint32(sb[0x60:])&0x80 != 0 { // INCOMPAT_64BIT: s_blocks_count_hi
		s.blocks |= uint64(le.Uint32(sb[0x150:])) << 32
	}
	if s.blockSize > 64<<10 || s.blocks == 0 {
		return ext4Super{}, fmt.Errorf("%s: ext4 superblock: %d blocks of %d bytes", dev, s.blocks, s.blockSize)
	}
	return s, nil
}

// ext4Clean says why the ext4 on dev must not be grown, if it must not:
// the kernel marks a file system with errors (EXT4_ERROR_FS) and one not
// cleanly unmounted without a journal (no EXT4_VALID_FS); e2fsck clears
// them.
func ext4Clean(dev string) error {
	s, err := readExt4Super(dev)
	if err != nil {
		return err
	}
	if s.state&1 == 0 || s.state&2 != 0 {
		return fmt.Errorf("the ext4 on %s is not clean (state %#x: errors or not checked; e2fsck it)", dev, s.state)
	}
	return nil
}

// growPermFS grows the ext4 mounted on target from dev to fill dev, when
// dev is bigger by more than permGrowMin (a partition just grown, or a
// whole disk made bigger). It returns the file system's size in bytes
// before and after (the same when nothing grew; zero when unknown).
func growPermFS(log *logger, dev, target string) (from, to int64) {
	s, err := readExt4Super(dev)
	if err != nil {
		log.Printf("/perm: not grown: %v", err)
		return 0, 0
	}
	from = int64(s.blocks) * s.blockSize
	f, err := os.Open(dev)
	if err != nil {
		log.Printf("/perm: not grown: %v", err)
		return from, from
	}
	end, err := f.Seek(0, io.SeekEnd) // a block device's size
	f.Close()
	devBytes := uint64(end)
	if err != nil {
		log.Printf("/perm: not grown: size of %s: %v", dev, err)
		return from, from
	}
	newBlocks := devBytes / uint64(s.blockSize)
	if newBlocks <= s.blocks || int64(newBlocks-s.blocks)*s.blockSize < permGrowMin {
		return from, from // the usual boot
	}
	if err := ext4Clean(dev); err != nil {
		log.Printf("/perm: file system not grown: %v; nothing changed", err)
		return from, from
	}
	dir, err := os.Open(target)
	if err != nil {
		log.Printf("/perm: file system not grown: %v", err)
		return from, from
	}
	defer dir.Close()
	start := time.Now()
	n := newBlocks
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, dir.Fd(), ext4IocResizeFS, uintptr(unsafe.Pointer(&n))); e != 0 {
		log.Printf("/perm: file system not grown: EXT4_IOC_RESIZE_FS %s to %d blocks: %v%s", dev, newBlocks, e, kernelSays("EXT4-fs", filepath.Base(dev)+")"))
		return from, from
	}
	to = int64(newBlocks) * s.blockSize
	log.Printf("/perm: grew the file system on %s from %s to %s in %s", dev, sizeText(from), sizeText(to), secs(time.Since(start)))
	return from, to
}

// kernelSays returns "; kernel: <message> / ..." for the last three
// messages in the kernel's log (/dev/kmsg) that contain both a and b, or
// "": the resize ioctl's
// errno alone (EINVAL) does not say which of ext4's checks refused, and
// the console is quiet (loglevel=3) on the appliance.
func kernelSays(a, b string) string {
	// Raw reads: an os.File would park on EAGAIN in the poller and wait
	// for the next kernel message, for ever.
	fd, err := unix.Open("/dev/kmsg", unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return ""
	}
	defer unix.Close(fd)
	var last []string
	buf := make([]byte, 8192)
	for i := 0; i < 1<<16; i++ { // one record a read, until EAGAIN
		n, err := unix.Read(fd, buf)
		if err == unix.EPIPE { // overwritten while read: go on
			continue
		}
		if err != nil || n <= 0 {
			break
		}
		// "4,1234,5678,-;EXT4-fs warning (device vda2): ...\n continuation"
		_, msg, ok := strings.Cut(string(buf[:n]), ";")
		if msg, _, _ = strings.Cut(msg, "\n"); ok && strings.Contains(msg, a) && strings.Contains(msg, b) {
			last = append(last, msg)
		}
	}
	if len(last) == 0 {
		return ""
	}
	return "; kernel: " + strings.Join(last[max(0, len(last)-3):], " / ")
}

// sizeText is "256 MiB" or "31.2 GiB".
func sizeText(n int64) string {
	if n < 1<<30 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
}
