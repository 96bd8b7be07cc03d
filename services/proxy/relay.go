package proxy

import (
	"errors"
	"io"
	"net"
	"sync/atomic"
	"time"

	"github.com/otgate/otgate/audit"
)

// relayBufSize is each direction's buffer: one read, one write, no
// other copy (the TLS layer's encryption and decryption aside).
const relayBufSize = 8 << 10

// drainTimeout bounds how long the other direction may run after one side
// has closed its half.
const drainTimeout = 5 * time.Second

type closeWriter interface{ CloseWrite() error }

// relayRaw copies bytes both ways until both sides are done, recording
// one payload record per chunk after forwarding it. It returns the natural
// end reason (who closed first, or the error).
func (s *Server) relayRaw(tc, asset io.ReadWriteCloser, sess *session) string {
	var first atomic.Uint32 // the direction that ended first
	var firstErr atomic.Value
	finish := func(dir audit.Direction, err error) {
		if first.CompareAndSwap(0, uint32(dir)) {
			if err != nil {
				firstErr.Store(err)
			}
			// One way is done: the other may drain for a while.
			time.AfterFunc(drainTimeout, sess.closeConn)
		}
	}
	// Who ended first is settled before the other side learns of it (the
	// half-close), or its answering close could be taken for the first.
	oneWay := func(dst io.Writer, src io.Reader, dir audit.Direction, count *atomic.Uint64) {
		err := s.pump(dst, src, sess, dir, count)
		finish(dir, err)
		if err == nil {
			if cw, ok := dst.(closeWriter); ok {
				cw.CloseWrite()
			}
		}
	}
	done := make(chan struct{})
	go func() {
		oneWay(tc, asset, audit.ToClient, &sess.toClient)
		close(done)
	}()
	oneWay(asset, tc, audit.ToAsset, &sess.toAsset)
	<-done
	sess.closeConn()
	if err, _ := firstErr.Load().(error); err != nil && !isClosed(err) {
		if audit.Direction(first.Load()) == audit.ToAsset {
			return "relay to asset: " + err.Error()
		}
		return "relay to client: " + err.Error()
	}
	if audit.Direction(first.Load()) == audit.ToClient {
		return EndAssetClosed
	}
	return EndClientClosed
}

// pump copies src to dst. It returns nil at EOF (the caller half-closes
// dst), or the error.
func (s *Server) pump(dst io.Writer, src io.Reader, sess *session, dir audit.Direction, count *atomic.Uint64) error {
	buf := make([]byte, relayBufSize)
	prefix := s.cfg.RawPrefix
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			at := s.cfg.Now()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return werr
			}
			count.Add(uint64(n))
			sess.touch(at.UnixNano())
			p := audit.Payload{SessionID: sess.id, First: audit.TimestampOf(at), Direction: dir, Bytes: uint64(n)}
			if prefix > 0 {
				p.Raw = buf[:min(n, prefix)]
			}
			if _, err := s.cfg.Log.AppendBuffered(p); err != nil {
				// Never an unlogged byte after this one.
				sess.end("audit log failed: " + err.Error())
				return err
			}
		}
		if rerr != nil {
			if rerr == io.EOF {
				return nil
			}
			return rerr
		}
	}
}

func isClosed(err error) bool {
	return err == nil || errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF)
}
