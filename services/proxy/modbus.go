package proxy

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"strconv"

	"github.com/otgate/otgate/audit"
	"github.com/otgate/otgate/inspect/modbus"
)

// countingClient counts the client side's bytes and marks activity; the
// inspector reads and writes through it without any extra copy.
type countingClient struct {
	io.ReadWriteCloser
	sess *session
	now  func() int64
}

func (c *countingClient) Read(b []byte) (int, error) {
	n, err := c.ReadWriteCloser.Read(b)
	if n > 0 {
		c.sess.toAsset.Add(uint64(n))
		c.sess.touch(c.now())
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

// relayModbus inspects the session with the decision's Modbus rules and
// writes one decoded payload record per transaction.
func (s *Server) relayModbus(tc *tls.Conn, asset io.ReadWriteCloser, sess *session, d Decision) string {
	mode := modbus.Enforce
	if d.Monitor {
		mode = modbus.Monitor
	}
	sink := modbus.SinkFunc(func(r *modbus.Record) {
		if _, err := s.cfg.Log.AppendBuffered(modbusPayload(sess, r)); err != nil {
			sess.end("audit log failed: " + err.Error())
		}
	})
	client := &countingClient{ReadWriteCloser: tc, sess: sess, now: func() int64 { return s.cfg.Now().UnixNano() }}
	err := modbus.Relay(context.Background(), modbus.Config{Policy: d.Modbus, Mode: mode, Sink: sink, Now: s.cfg.Now}, client, asset)
	var end *modbus.EndError
	switch {
	case errors.As(err, &end):
		return "modbus: " + end.Error()
	case err != nil && !isClosed(err):
		return "modbus relay: " + err.Error()
	}
	return EndClientClosed
}

// modbusPayload turns a decoded transaction into a payload record.
// Its Detail["text"] is the transcript line with the session's user and
// asset, e.g. "14:03:04.120 alice plc-7 unit 1 write holding 52 = 55 -> ok
// (1.2 ms)", which `otgate audit show` prints.
func modbusPayload(sess *session, r *modbus.Record) audit.Payload {
	id := sess.id
	dec := &audit.Decoded{
		Protocol:     "modbus",
		Transaction:  uint64(r.TransactionID),
		Unit:         uint32(r.Unit),
		Function:     uint32(r.Function),
		FunctionName: r.Function.String(),
		Start:        uint32(r.Address),
		Count:        uint32(r.Count),
		Latency:      int64(r.Latency()),
		Detail:       map[string]string{"text": string(r.AppendText(nil, sess.user, sess.asset))},
	}
	if r.Table != 0 {
		dec.Table = r.Table.String()
	}
	switch r.Outcome {
	case modbus.OutcomeOK:
		dec.Outcome = "ok"
	case modbus.OutcomeException:
		dec.Outcome = "exception " + strconv.Itoa(int(r.Exception))
	default:
		dec.Outcome = r.Outcome.String()
	}
	if r.Verdict == modbus.VerdictDenied || r.Verdict == modbus.VerdictWouldDeny {
		dec.Outcome = r.Verdict.String() + ": " + r.Reason + " (" + dec.Outcome + ")"
	}
	if r.Table == modbus.TableHoldingRegisters || r.Table == modbus.TableInputRegisters {
		vals := r.Written
		if len(vals) == 0 {
			vals = r.ReadValues
		}
		for i := 0; i+1 < len(vals); i += 2 {
			dec.Values = append(dec.Values, int64(binary.BigEndian.Uint16(vals[i:])))
		}
	}
	p := audit.Payload{SessionID: id, First: audit.TimestampOf(r.RequestTime), Last: audit.TimestampOf(r.ResponseTime),
		Direction: audit.ToAsset, Decoded: dec}
	if p.First == 0 {
		p.First, p.Direction = p.Last, audit.ToClient
	}
	return p
}
