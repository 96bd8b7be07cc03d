package proxy

import (
	"context"
	"errors"
	"io"
	"sync/atomic"
	"time"

	"github.com/otgate/otgate/audit"
	"github.com/otgate/otgate/inspect/modbus"
)

// sessionEnded is the end reason of a Modbus session that had ended, or
// whose deadline had passed, when a request was judged.
type sessionEnded string

func (e sessionEnded) Error() string { return string(e) }

// admitModbus is the Modbus inspector's Admit: a request judged after the
// session has been ended (revoked, a reload, shutdown: its connections
// are being closed, and a burst already read is still being judged) or
// past its deadline by the clock it is judged with is not forwarded. The
// timer that ends the session at its deadline runs on the monotonic
// clock: late after a suspend or a clock set forward, until the next
// sweep.
func (s *session) admitModbus(at time.Time) error {
	select {
	case <-s.ended:
		return sessionEnded(s.reason("session ended"))
	default:
	}
	if why, past := s.pastUntil(at); past {
		return sessionEnded(why)
	}
	return nil
}

// countingClient counts the bytes sent to the client and marks activity;
// the inspector reads and writes through it without any extra copy.
type countingClient struct {
	io.ReadWriteCloser
	sess  *session
	now   func() int64
	first *firstClosed
}

func (c *countingClient) Read(b []byte) (int, error) {
	n, err := c.ReadWriteCloser.Read(b)
	if n > 0 {
		c.sess.touch(c.now())
	}
	if err != nil {
		c.first.set(closedByClient)
	}
	return n, err
}

func (c *countingClient) Write(b []byte) (int, error) {
	n, err := c.ReadWriteCloser.Write(b)
	if n > 0 {
		c.sess.toClient.Add(uint64(n))
		c.sess.touch(c.now())
	}
	return n, err
}

// countingAsset counts the bytes the inspector forwards to the asset:
// denied requests and a malformed frame never reach it, so they are not
// in the session's bytes to the asset.
type countingAsset struct {
	io.ReadWriteCloser
	sess  *session
	first *firstClosed
}

func (a *countingAsset) Read(b []byte) (int, error) {
	n, err := a.ReadWriteCloser.Read(b)
	if err != nil {
		a.first.set(closedByAsset)
	}
	return n, err
}

// firstClosed is the side whose reads ended first (its close, or the
// relay's close of it after the other side's end): the end reason of a
// session the relay saw end without an error.
type firstClosed struct{ side atomic.Uint32 }

const (
	closedByClient = 1 + iota
	closedByAsset
)

func (f *firstClosed) set(side uint32) { f.side.CompareAndSwap(0, side) }

func (a *countingAsset) Write(b []byte) (int, error) {
	n, err := a.ReadWriteCloser.Write(b)
	a.sess.toAsset.Add(uint64(n))
	return n, err
}

// CloseWrite half-closes the asset connection when it can (the relay's
// drain after the client's end relies on it).
func (a *countingAsset) CloseWrite() error {
	if cw, ok := a.ReadWriteCloser.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// relayModbus inspects the session with the decision's Modbus rules and
// writes one decoded payload record per transaction (its fields; `otgate
// audit show` renders the transcript line from them and the session's
// start record), and for a request that may change the device's state
// (modbus.RecordedBeforeForwarding) one more before its bytes go to the
// asset: a "forwarded" record, which that transaction's record completes.
// Both are AppendBuffered: written to the file before the inspector goes
// on (a proxy crash keeps them). A transaction's record is durable at the
// log's next flush; a "forwarded" record starts one at once (FlushSoon:
// at most one every 200 ms, which a stream of writes shares), so a power
// cut right after a write reached the device loses its record only inside
// that fsync (or, in a stream, that gap), not a flush interval, and
// nothing waits for it (the request is not held, the response cut through
// as before).
// A failed append ends the session (fail closed): the inspector forwards
// no request whose record failed.
func (s *Server) relayModbus(tc, asset io.ReadWriteCloser, sess *session, d Decision) string {
	var dec audit.Decoded // reused: the inspector serialises sink calls, each appends before returning
	sink := modbus.SinkFunc(func(r *modbus.Record) error {
		_, err := s.cfg.Log.AppendBuffered(modbus.AuditPayload(sess.id, r, &dec))
		if err == nil && r.Outcome == modbus.OutcomeForwarded {
			s.cfg.Log.FlushSoon()
		}
		return err
	})
	var first firstClosed
	client := &countingClient{ReadWriteCloser: tc, sess: sess, now: func() int64 { return s.cfg.Now().UnixNano() }, first: &first}
	err := modbus.Relay(context.Background(), modbus.Config{Policy: d.Modbus, Rules: &sess.modbusRules, Monitoring: &sess.monitor, Sink: sink, Now: s.cfg.Now, Admit: sess.admitModbus},
		client, &countingAsset{ReadWriteCloser: asset, sess: sess, first: &first})
	var rec *modbus.RecordError
	var end *modbus.EndError
	var ended sessionEnded
	switch {
	case errors.As(err, &rec):
		return "audit log failed: " + rec.Error()
	case errors.As(err, &end):
		return "modbus: " + end.Error()
	case errors.As(err, &ended):
		return string(ended)
	case err != nil && !isClosed(err):
		return "modbus relay: " + err.Error()
	case first.side.Load() == closedByAsset:
		return EndAssetClosed
	}
	return EndClientClosed
}
