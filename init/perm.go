package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/ext4"
	"golang.org/x/sys/unix"
)

// permState is what the status socket reports about /perm.
type permState struct {
	Device  string
	FSType  string
	Size    int64 // bytes of the file system (ext4 only)
	Boots   uint64
	Warning string
	Grown   string // what this boot grew (permgrow.go), or ""
}

// Content of a would-be /perm device.
type diskContent int

const (
	diskBlank   diskContent = iota // all zero where a file system would be
	diskExt4                       // ext2/3/4 superblock magic
	diskUnknown                    // something else: never formatted over
	// diskExt4Backup: the start is blank but a backup ext4 superblock is
	// where mkfs puts the first one: a file system whose start was lost
	// (zeroed by a tool, or by flash that lost its mapping in a power
	// cut), which e2fsck can rebuild from the backup. Never formatted.
	diskExt4Backup
)

func (c diskContent) String() string {
	return [...]string{"blank", "ext4", "unknown content", "ext4 with its start zeroed"}[c]
}

// backupSuperblock looks for the first backup superblock of an ext2/3/4
// file system with any of mkfs's block sizes: in block group 1, at block
// 8*bs (+1 with 1 KiB blocks, whose block 0 is the boot block). It
// returns the byte offset of the one found, or -1. A hit must describe
// that layout (block size, first data block, blocks per group), not just
// carry two magic bytes. (s_block_group_nr is not checked: go-diskfs,
// which formats /perm, writes 0 there in the backups.)
func backupSuperblock(f io.ReaderAt) int64 {
	for logBS := uint32(0); logBS <= 2; logBS++ { // 1, 2 and 4 KiB
		bs := uint32(1024) << logBS
		first := uint32(0)
		if bs == 1024 {
			first = 1
		}
		off := int64(8*bs+first) * int64(bs)
		var sb [0x3a]byte
		if _, err := f.ReadAt(sb[:], off); err != nil {
			continue
		}
		le := binary.LittleEndian
		if le.Uint16(sb[0x38:]) == 0xEF53 && // s_magic
			le.Uint32(sb[0x14:]) == first && // s_first_data_block
			le.Uint32(sb[0x18:]) == logBS && // s_log_block_size
			le.Uint32(sb[0x20:]) == 8*bs { // s_blocks_per_group
			return off
		}
	}
	return -1
}

// resolvePermDevice turns "/dev/vda" or "PARTLABEL=name" into a device
// path, searching sysDir (/sys) for the partition name.
func resolvePermDevice(spec, sysDir, devDir string) (string, error) {
	label, ok := strings.CutPrefix(spec, "PARTLABEL=")
	if !ok {
		return spec, nil
	}
	dirs, err := filepath.Glob(filepath.Join(sysDir, "class/block/*/uevent"))
	if err != nil {
		return "", err
	}
	var found []string
	for _, u := range dirs {
		kv := readUevent(u)
		if kv["PARTNAME"] == label && kv["DEVNAME"] != "" {
			found = append(found, filepath.Join(devDir, kv["DEVNAME"]))
		}
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("no partition labelled %q in %s/class/block", label, sysDir)
	case 1:
		return found[0], nil
	}
	// A second disk with the image on it (a USB stick left in): taking
	// the first in name order could put /perm on, and format, the wrong
	// disk, whose name order is not even stable across boots.
	return "", fmt.Errorf("%d partitions labelled %q (%s): %w", len(found), label, strings.Join(found, ", "), errPermAmbiguous)
}

func readUevent(path string) map[string]string {
	m := map[string]string{}
	f, err := os.Open(path)
	if err != nil {
		return m
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			m[k] = v
		}
	}
	return m
}

// probeDisk reads the first 64 KiB of dev and says what is on it.
func probeDisk(dev string) (diskContent, error) {
	f, err := os.Open(dev)
	if err != nil {
		return diskUnknown, err
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	n, err := io.ReadFull(f, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return diskUnknown, fmt.Errorf("read %s: %w", dev, err)
	}
	buf = buf[:n]
	// The ext superblock starts at byte 1024; its magic 0xEF53 (LE) is at
	// offset 0x38 within it.
	if len(buf) >= 1024+0x3a && binary.LittleEndian.Uint16(buf[1024+0x38:]) == 0xEF53 {
		return diskExt4, nil
	}
	if len(buf) > 0 && bytes.Count(buf, []byte{0}) == len(buf) {
		if backupSuperblock(f) >= 0 {
			return diskExt4Backup, nil
		}
		return diskBlank, nil
	}
	return diskUnknown, nil
}

// formatExt4 writes an ext4 file system over the whole of dev (pure Go,
// go-diskfs), or over its first max bytes when max > 0.
func formatExt4(dev string, max int64) (int64, error) {
	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return 0, fmt.Errorf("size of %s: %w", dev, err)
	}
	if max > 0 && max < size {
		size = max
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return 0, err
	}
	// No resize_inode: go-diskfs lays its reserved GDT blocks out one
	// slot off from where the kernel looks (EXT4-fs warning: "new group
	// 32 GDT block 4 not reserved"), so the online resize that grows
	// /perm (permgrow.go) fails with EINVAL. Without it the kernel
	// converts the file system to meta_bg at the first resize, which has
	// no size limit.
	params := &ext4.Params{VolumeName: "otgate-perm",
		Features: []ext4.FeatureOpt{ext4.WithFeatureReservedGDTBlocksForExpansion(false)}}
	if _, err := ext4.Create(file.New(f, false), size, 0, 512, params); err != nil {
		return 0, fmt.Errorf("mkfs.ext4 %s (%d bytes): %w", dev, size, err)
	}
	if err := f.Sync(); err != nil {
		return 0, fmt.Errorf("sync %s: %w", dev, err)
	}
	return size, nil
}

// setupPerm makes /perm (at target) usable: it waits up to wait for
// devSpec to appear (permWait), mounts it, formatting a blank disk first,
// and tries a failed read or mount again a few times. Anything else (no
// disk, unknown content, a mount that keeps failing) falls back to a tmpfs
// with a loud warning: the gate still runs, but nothing it writes
// survives a reboot. A disk that shows up after the wait is reported
// (watchLatePerm), never mounted over the tmpfs the services already use.
func setupPerm(log *logger, devSpec, sysDir, devDir, target string, wait time.Duration) permState {
	if err := os.MkdirAll(target, 0o755); err != nil {
		log.Printf("/perm: mkdir %s: %v", target, err)
	}
	st, err := mountPermDevice(log, devSpec, sysDir, devDir, target, wait)
	var notFound *permNotFoundError
	if errors.As(err, &notFound) {
		go watchLatePerm(log, devSpec, sysDir, devDir, wait, latePermWatch)
	}
	if err != nil {
		st = permState{FSType: "tmpfs", Warning: fmt.Sprintf("no persistent storage (%v); /perm is a tmpfs and is lost at power-off", err)}
		if merr := unix.Mount("tmpfs", target, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755"); merr != nil {
			log.Printf("/perm: mount tmpfs: %v", merr)
		}
		warnNoPerm(log, err)
	}
	boots, err := countBoot(filepath.Join(target, "init", "boots"))
	if err != nil {
		log.Printf("/perm: boot counter: %v", err)
	}
	st.Boots = boots
	if st.Warning == "" {
		log.Printf("/perm mounted (%s, %s, boot %d)", st.Device, st.FSType, boots)
	}
	return st
}

func warnNoPerm(log *logger, err error) {
	bar := strings.Repeat("*", 64)
	log.Printf("%s", bar)
	log.Printf("WARNING: NO PERSISTENT STORAGE")
	log.Printf("WARNING: /perm: %v", err)
	log.Printf("WARNING: /perm is a tmpfs: policy, identity, users and audit")
	log.Printf("WARNING: records written now are LOST at power-off.")
	log.Printf("%s", bar)
}

func mountPermDevice(log *logger, devSpec, sysDir, devDir, target string, wait time.Duration) (permState, error) {
	if devSpec == "" {
		return permState{}, errors.New("the board names no persistent disk")
	}
	dev, err := waitPermDevice(log, devSpec, sysDir, devDir, wait)
	if err != nil {
		return permState{}, err
	}
	// A partition with room after it grows before the mount; its file
	// system (formatted at the partition's old size when blank: the
	// format stays as fast and small as ever, and the kernel's online
	// resize, the one path for new and old gates, takes it from there)
	// grows after the mount.
	g := growPermPartition(log, dev, sysDir, devDir)
	st, err := mountPermRetry(log, dev, target, g.from)
	if err != nil {
		return st, err
	}
	from, to := growPermFS(log, dev, target)
	st.Size = to
	switch {
	case to == from && g.to > 0:
		st.Grown = fmt.Sprintf("grew partition %s to %s (GPT moved to the disk's end); its file system was not grown (see the log)", permName(devSpec, dev), sizeText(g.to))
	case to > from && g.to > 0:
		st.Grown = fmt.Sprintf("grew %s from %s to %s (GPT moved to the disk's end)", permName(devSpec, dev), sizeText(from), sizeText(to))
	case to > from:
		st.Grown = fmt.Sprintf("grew the file system on %s from %s to %s", dev, sizeText(from), sizeText(to))
	}
	return st, nil
}

// permName is the partition label of a PARTLABEL= spec, or the device.
func permName(devSpec, dev string) string {
	if l, ok := strings.CutPrefix(devSpec, "PARTLABEL="); ok {
		return l
	}
	return dev
}

// mountPermRetry mounts dev on target (mountPermOnce), formatting it
// (its first formatMax bytes, when not zero) if it is blank.
func mountPermRetry(log *logger, dev, target string, formatMax int64) (permState, error) {
	// A disk that has just appeared may not read yet (a USB or SD
	// reader before its medium is ready), and a mount can fail for a
	// moment: a few tries before the tmpfs. What the disk holds (unknown
	// content, a zeroed ext4 start) and a failed format are answers, not
	// hiccups: no retry.
	for try := 1; ; try++ {
		st, err, again := mountPermOnce(log, dev, target, formatMax)
		if err == nil || !again || try == len(permRetryDelays)+1 {
			return st, err
		}
		d := permRetryDelays[try-1]
		log.Printf("/perm: %v; trying again in %s (%d of %d)", err, short(d), try+1, len(permRetryDelays)+1)
		time.Sleep(d)
	}
}

// mountPermOnce probes dev, formats it if it is blank, and mounts it on
// target. again says whether the error may pass (a read or mount error).
func mountPermOnce(log *logger, dev, target string, formatMax int64) (_ permState, _ error, again bool) {
	content, err := probeDisk(dev)
	if err != nil {
		return permState{}, err, true
	}
	switch content {
	case diskUnknown:
		return permState{}, fmt.Errorf("%s holds something that is not ext4; refusing to format it (wipe its first MiB to let init format it)", dev), false
	case diskExt4Backup:
		return permState{}, fmt.Errorf("%s: its start is zeroed but it holds an ext4 file system (backup superblock found): damaged, not blank; refusing to format it (e2fsck can rebuild it from the backup; wipe the whole disk to let init format it)", dev), false
	case diskBlank:
		log.Printf("/perm: %s is blank, formatting ext4", dev)
		start := time.Now()
		size, err := formatExt4(dev, formatMax)
		if err != nil {
			return permState{}, err, false
		}
		log.Printf("/perm: formatted %s (%d MiB) in %s", dev, size>>20, secs(time.Since(start)))
		// The formatter's buffers are garbage now: give the memory back
		// so PID 1 stays small for the rest of its life.
		debug.FreeOSMemory()
	}
	if err := unix.Mount(dev, target, "ext4", unix.MS_NOATIME|unix.MS_NODEV|unix.MS_NOSUID, ""); err != nil {
		return permState{}, fmt.Errorf("mount %s on %s: %w", dev, target, err), true
	}
	return permState{Device: dev, FSType: "ext4"}, nil, false
}

// countBoot increments the decimal counter in path (atomically) and returns
// the new value. A missing file counts as zero; a corrupt one is an error
// and is left as it is.
func countBoot(path string) (uint64, error) {
	n, err := readCount(path)
	if err != nil {
		return 0, err
	}
	n++
	if err := writeFileAtomic(path, []byte(strconv.FormatUint(n, 10)+"\n"), 0o644); err != nil {
		return n, err
	}
	return n, nil
}

// readCount reads a decimal counter; a missing file is zero.
func readCount(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: not a count: %w", path, err)
	}
	return n, nil
}

// writeFileAtomic replaces path with data: temp file, fsync, rename, fsync
// of the directory. A power cut leaves the old or the new content.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("fsync %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}
