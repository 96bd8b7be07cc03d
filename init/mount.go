package main

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// mountSpec is one early mount.
type mountSpec struct {
	source, target, fstype string
	flags                  uintptr
	data                   string
}

var earlyMounts = []mountSpec{
	{"proc", "/proc", "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
	{"sysfs", "/sys", "sysfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
	{"devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID, "mode=0755"},
	{"devpts", "/dev/pts", "devpts", unix.MS_NOSUID | unix.MS_NOEXEC, "gid=5,mode=0620,ptmxmode=0666"},
	{"tmpfs", "/run", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=0755"},
	{"tmpfs", "/tmp", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777"},
}

// mountEarly mounts the pseudo file systems. A failure is logged and the
// rest are still tried: init keeps going with what it has.
func mountEarly(log *logger) {
	for _, m := range earlyMounts {
		if err := mountOne(m); err != nil {
			log.Printf("mount %s on %s: %v", m.fstype, m.target, err)
		}
	}
}

func mountOne(m mountSpec) error {
	if err := os.MkdirAll(m.target, 0o755); err != nil {
		return fmt.Errorf("mkdir %s: %w", m.target, err)
	}
	err := unix.Mount(m.source, m.target, m.fstype, m.flags, m.data)
	if errors.Is(err, unix.EBUSY) {
		return nil // already mounted
	}
	return err
}
