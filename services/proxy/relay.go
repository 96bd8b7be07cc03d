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

// relayRaw copies bytes both ways until both sides are done, with one
// payload record per chunk: a chunk from the client is recorded before it
// goes to the asset, a chunk from the asset after it went to the client
// (see pump). It returns the natural end reason (who closed first, or the
// error).
func (s *Server) relayRaw(tc, asset io.ReadWriteCloser, sess *session) string {
	var first atomic.Uint32 // the direction that ended first
	var firstErr atomic.Value
	var drain atomic.Pointer[time.Timer]
	finish := func(dir audit.Direction, err error) {
		if first.CompareAndSwap(0, uint32(dir)) {
			if err != nil {
				firstErr.Store(err)
			}
			// One way is done: the other may drain for a while.
			drain.Store(time.AfterFunc(drainTimeout, sess.closeConn))
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
	if t := drain.Load(); t != nil {
		t.Stop() // both ways done: the session (and its memory) need not wait for it
	}
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

// pump copies src to dst, one payload record per chunk. It returns nil
// at EOF (the caller half-closes dst), or the error.
//
// Toward the asset the record is written first: when it fails the session
// ends and the chunk is not forwarded, so no byte reaches the asset
// unrecorded (as the Modbus relay records a write before forwarding it).
// Toward the client the chunk is forwarded first and recorded after: what
// the gate guards is the plant, and a chunk of the asset's answer that
// reaches the client when its record then fails (the session ends at
// once) changes nothing there, while writing the record first would put
// the log's write on the answer's path of every exchange, the half of the
// round trip the client waits on last.
func (s *Server) pump(dst io.Writer, src io.Reader, sess *session, dir audit.Direction, count *atomic.Uint64) error {
	buf := make([]byte, relayBufSize)
	first := dir == audit.ToAsset
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			at := s.cfg.Now()
			if first {
				if err := s.recordChunk(sess, dir, at, buf[:n]); err != nil {
					return err
				}
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return werr
			}
			count.Add(uint64(n))
			sess.touch(at.UnixNano())
			if !first {
				if err := s.recordChunk(sess, dir, at, buf[:n]); err != nil {
					return err
				}
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

// recordChunk writes the payload record of one relayed chunk; a failure
// ends the session (never an unlogged byte after it).
func (s *Server) recordChunk(sess *session, dir audit.Direction, at time.Time, b []byte) error {
	p := audit.Payload{SessionID: sess.id, First: audit.TimestampOf(at), Direction: dir, Bytes: uint64(len(b))}
	if prefix := s.cfg.RawPrefix; prefix > 0 {
		p.Raw = b[:min(len(b), prefix)]
	}
	if _, err := s.cfg.Log.AppendBuffered(p); err != nil {
		sess.end("audit log failed: " + err.Error())
		return err
	}
	return nil
}

func isClosed(err error) bool {
	return err == nil || errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF)
}
