package lab

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// openTap creates a (non-persistent) tap device called name in the calling
// thread's network namespace and returns its descriptor: the device exists
// as long as the descriptor (or a copy handed to QEMU) is open.
func openTap(name string) (*os.File, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/net/tun for tap %s: %w", name, err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("tap name %q: %w", name, err)
	}
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("create tap %s (TUNSETIFF): %w", name, err)
	}
	return os.NewFile(uintptr(fd), "tap:"+name), nil
}
