package proxy

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// tcpDialer dials assets over TCP with SO_MARK set to mark (when not 0)
// before connect, so the segment ruleset can tell the proxy's sockets
// apart, and TCP_NODELAY (the default in Go) so small requests go out at
// once.
func tcpDialer(mark int, timeout time.Duration) func(netip.AddrPort) (io.ReadWriteCloser, error) {
	d := &net.Dialer{Timeout: timeout}
	if mark != 0 {
		d.Control = func(network, address string, c syscall.RawConn) error {
			var serr error
			if err := c.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, mark)
			}); err != nil {
				return err
			}
			if serr != nil {
				return fmt.Errorf("set SO_MARK %d: %w", mark, serr)
			}
			return nil
		}
	}
	return func(ap netip.AddrPort) (io.ReadWriteCloser, error) {
		c, err := d.Dial("tcp", ap.String())
		if err != nil {
			return nil, err
		}
		return c, nil
	}
}
