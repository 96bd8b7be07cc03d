package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// tcpDialer dials assets over TCP with SO_MARK set to mark (when not 0)
// before connect, so the segment ruleset can tell the proxy's sockets
// apart, and TCP_NODELAY (the default in Go) so small requests go out at
// once. The connect gives up when ctx ends.
func tcpDialer(mark int, timeout time.Duration) func(context.Context, netip.AddrPort) (io.ReadWriteCloser, error) {
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
	return func(ctx context.Context, ap netip.AddrPort) (io.ReadWriteCloser, error) {
		c, err := d.DialContext(ctx, "tcp", ap.String())
		if err != nil {
			return nil, err
		}
		return c, nil
	}
}

// withoutContext makes a dial without a context (Config.Dial) return
// when ctx ends; the dial goes on meanwhile, and a connection it opens
// after that is closed.
func withoutContext(dial func(netip.AddrPort) (io.ReadWriteCloser, error)) func(context.Context, netip.AddrPort) (io.ReadWriteCloser, error) {
	type result struct {
		c   io.ReadWriteCloser
		err error
	}
	return func(ctx context.Context, ap netip.AddrPort) (io.ReadWriteCloser, error) {
		done := make(chan result, 1)
		go func() {
			c, err := dial(ap)
			done <- result{c, err}
		}()
		select {
		case r := <-done:
			return r.c, r.err
		case <-ctx.Done():
			go func() {
				if r := <-done; r.c != nil {
					r.c.Close()
				}
			}()
			return nil, ctx.Err()
		}
	}
}

// dialAsset dials the session's asset with a context that ends at
// DialTimeout, when the gate shuts down or when the session ends (its
// client gone, revoked, a reload, its window's end): a dial toward an
// asset that does not answer holds the session's place among the live
// sessions only while the session has a reason to exist.
func (s *Server) dialAsset(sess *session, addr netip.AddrPort) (io.ReadWriteCloser, error) {
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.DialTimeout)
	defer cancel()
	go func() {
		select {
		case <-sess.ended:
			cancel()
		case <-ctx.Done():
		}
	}()
	return s.cfg.DialContext(ctx, addr)
}

// clientWatch reads a tunnel's client while the gate has not answered it
// yet (the start record, the asset's dial): a client that goes away (its
// close, a reset) ends the session, which abandons the dial. The client
// speaks first only after the answer; bytes it sends before are kept
// (up to relayBufSize, after which it is not watched any more) and
// relayed first.
type clientWatch struct {
	tc    *tls.Conn
	done  chan struct{}
	early []byte // set before done is closed
	once  sync.Once
}

// watchClient starts watching tc for sess. The header has been read: the
// handshake's read deadline, which bounded the client's part, is lifted.
func watchClient(tc *tls.Conn, sess *session) *clientWatch {
	w := &clientWatch{tc: tc, done: make(chan struct{})}
	tc.SetReadDeadline(time.Time{})
	go w.run(sess)
	return w
}

func (w *clientWatch) run(sess *session) {
	defer close(w.done)
	buf := make([]byte, relayBufSize)
	n := 0
	var err error
	for n < len(buf) && err == nil {
		var k int
		k, err = w.tc.Read(buf[n:])
		n += k
	}
	switch {
	case err == nil: // the buffer is full: the client is there
	case errors.Is(err, os.ErrDeadlineExceeded): // stop
	case errors.Is(err, io.EOF):
		sess.end(EndClientClosed + " before the gate's answer")
	default:
		sess.end("client gone before the gate's answer: " + err.Error())
	}
	if n > 0 {
		w.early = buf[:n]
	}
}

// stop stops the watch and returns what the client sent meanwhile. A read
// interrupted by its deadline leaves the TLS connection as it was (a
// partial record stays buffered), so the relay reads on from there.
func (w *clientWatch) stop() []byte {
	w.once.Do(func() {
		w.tc.SetReadDeadline(time.Unix(1, 0))
		<-w.done
		w.tc.SetReadDeadline(time.Time{})
	})
	return w.early
}

// earlyConn is the client's connection with the bytes it sent before the
// gate's answer in front.
type earlyConn struct {
	*tls.Conn
	early []byte
}

func (c *earlyConn) Read(b []byte) (int, error) {
	if len(c.early) > 0 {
		n := copy(b, c.early)
		c.early = c.early[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}
