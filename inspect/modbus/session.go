package modbus

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// Mode is the zone's enforcement mode.
type Mode uint8

// Modes.
const (
	// Enforce answers denied requests locally with an exception.
	Enforce Mode = iota
	// Monitor forwards every well-formed request and records the ones
	// enforce mode would deny as VerdictWouldDeny. Malformed and
	// oversized frames still end the session: the stream can no longer
	// be followed, so it could no longer be recorded.
	Monitor
)

// DefaultMaxOutstanding is the default number of pipelined requests a
// session tracks.
const DefaultMaxOutstanding = 32

// Config configures a Session.
type Config struct {
	Policy *Policy // required
	// Rules, if set and holding a policy, is read for each request
	// instead of Policy: the proxy moves a live session to the rules of
	// the grant that takes it over at another's window end, or that a
	// policy reload gives it, so that the next request is judged, and its
	// decision and record name, the rules in force.
	Rules *atomic.Pointer[Policy]
	Mode  Mode
	// Monitoring, if set, is read for each request instead of Mode (true:
	// Monitor): the proxy switches a live session when a reload puts its
	// asset's zone into or out of monitor mode.
	Monitoring *atomic.Bool
	Sink       Sink // required: no unlogged session
	// MaxOutstanding bounds the requests awaiting a response; when it is
	// exceeded the oldest is recorded as OutcomeNoResponse and forgotten.
	MaxOutstanding int
	// Now is the clock (time.Now if nil).
	Now func() time.Time
	// Admit, if set, is asked about each well-formed request with the
	// time it is judged at, before the policy is. An error ends the
	// session there: the request is not forwarded, it is answered with
	// exception 0A (gateway path unavailable) and recorded denied with
	// the error as the reason, and Requests returns the error (the
	// requests judged before it are forwarded). The proxy checks here
	// whether the session has been ended (revoked, reloaded) and its
	// deadline by the clock the request is judged with, so that no
	// request judged after either reaches the device, even before the
	// connections are closed (the timer that closes them at the deadline
	// fires late after a suspend or a clock set forward, and a burst
	// already read is still being judged when they are).
	Admit func(at time.Time) error
}

// EndError says why the inspector ended a session: a malformed or
// oversized frame, with the direction and stream offset where it started.
type EndError struct {
	Direction string // "client->device" or "device->client"
	Offset    int64  // byte offset of the bad frame in its direction's stream
	Err       error
}

func (e *EndError) Error() string {
	return fmt.Sprintf("%s frame at byte %d: %v", e.Direction, e.Offset, e.Err)
}

func (e *EndError) Unwrap() error { return e.Err }

// Session inspects one client<->device connection. Requests and Responses
// run concurrently, one goroutine each; Finish records what is still
// outstanding once both have returned.
type Session struct {
	cfg      Config
	now      func() time.Time
	toClient io.Writer
	toDevice io.Writer

	// clientMu serialises writes to the client: the device's cut-through
	// bytes and the gate's own exception responses. midFrame is true while
	// a device response is half written; exceptions wait for the boundary.
	clientMu   sync.Mutex
	clientCond *sync.Cond
	midFrame   bool
	clientErr  error

	// mu guards pending and evictErr. It is never held while the
	// Responses goroutine hands a record to the sink, so the request
	// direction does not wait for the log, except for the record of a
	// request recorded before forwarding (RecordedBeforeForwarding).
	mu       sync.Mutex
	pending  pendingTable
	evictErr error // the first failed record of an evicted request
	// sinkMu serialises the sink; taken after mu when both are held.
	sinkMu sync.Mutex
	// idle receives a token whenever the last outstanding request is answered.
	idle chan struct{}
	// method values made once, so the hot path does not allocate them
	evictFn   func(*outstanding)
	onFrameFn func([]byte)

	// request side (Requests goroutine only)
	reqBuf   [4096]byte
	req      Request
	reqRec   Record
	fwdRec   Record // the OutcomeForwarded record
	excBuf   [HeaderLen + 2]byte
	reqBytes int64

	// response side (Responses goroutine only)
	follow      follower
	resp        Response
	respRec     Record
	respWritten [MaxADU]byte // respRec.Written or Refs, copied out of the pending slot
	respBuf     [4096]byte
	respErr     error // the first failed record of a response
}

// monitor reports whether the request being judged is in monitor mode.
func (s *Session) monitor() bool {
	if s.cfg.Monitoring != nil {
		return s.cfg.Monitoring.Load()
	}
	return s.cfg.Mode == Monitor
}

// policy is the rules a request is judged by now.
func (s *Session) policy() *Policy {
	if s.cfg.Rules != nil {
		if p := s.cfg.Rules.Load(); p != nil {
			return p
		}
	}
	return s.cfg.Policy
}

// NewSession returns a session writing forwarded requests to toDevice and
// responses and exceptions to toClient.
func NewSession(cfg Config, toClient, toDevice io.Writer) (*Session, error) {
	if cfg.Policy == nil {
		return nil, errors.New("modbus session: no policy (refusing to relay uninspected)")
	}
	if cfg.Sink == nil {
		return nil, errors.New("modbus session: no record sink (refusing an unlogged session)")
	}
	if cfg.MaxOutstanding <= 0 {
		cfg.MaxOutstanding = DefaultMaxOutstanding
	}
	s := &Session{cfg: cfg, now: cfg.Now, toClient: toClient, toDevice: toDevice}
	if s.now == nil {
		s.now = time.Now
	}
	s.clientCond = sync.NewCond(&s.clientMu)
	s.evictFn, s.onFrameFn = s.evict, s.onResponse
	s.pending = newPendingTable(cfg.MaxOutstanding)
	s.idle = make(chan struct{}, 1)
	return s, nil
}

// Requests reads the client's stream until EOF (nil) or an error. Each
// frame is read whole, judged, and forwarded to the device or answered
// with an exception. A request whose values the specification forbids
// (ErrIllegalRequest) is answered with the exception a device gives it.
// A malformed or oversized frame returns an *EndError and nothing of it
// reaches the device.
func (s *Session) Requests(from io.Reader) error {
	start, end := 0, 0
	for {
		n, rerr := from.Read(s.reqBuf[end:])
		end += n
		run := start // first byte of frames judged allowed, not yet written
		for end-start >= HeaderLen {
			h, err := ParseHeader(s.reqBuf[start:end])
			if err != nil {
				return s.requestEnd(run, start, err)
			}
			total := h.FrameLen()
			if end-start < total {
				break
			}
			frame := s.reqBuf[start : start+total]
			if err := s.req.Parse(frame); err != nil {
				var fe *FieldError
				if !errors.As(err, &fe) || fe.Exception == 0 {
					return s.requestEnd(run, start, err)
				}
				// Framed correctly, values the specification forbids:
				// answered as a device answers them, never forwarded
				// (in monitor mode too: the gate cannot judge a span it
				// cannot read), and the session goes on.
				if err := s.writeDevice(run, start); err != nil {
					return err
				}
				dec := Decision{Exception: fe.Exception, Rule: s.policy().name, Reason: "illegal request: " + fe.Detail}
				if err := s.answer(s.now(), dec); err != nil {
					return err
				}
				start += total
				run = start
				s.reqBytes += int64(total)
				continue
			}
			at := s.now()
			if s.cfg.Admit != nil {
				if err := s.cfg.Admit(at); err != nil {
					if werr := s.writeDevice(run, start); werr != nil {
						return werr
					}
					dec := Decision{Exception: ExGatewayPathUnavailable, Rule: s.policy().name, Reason: err.Error()}
					if aerr := s.answer(at, dec); aerr != nil {
						var rerr *RecordError
						if errors.As(aerr, &rerr) {
							return aerr
						}
					}
					return err
				}
			}
			dec := s.policy().Judge(&s.req)
			switch {
			case dec.Allow, s.monitor():
				v := VerdictAllowed
				if !dec.Allow {
					v = VerdictWouldDeny
				}
				if err := s.forward(at, v, dec); err != nil {
					// Fail closed: this request is not forwarded. The
					// ones judged before it are (as requestEnd does):
					// their records, if any, say they were.
					if werr := s.writeDevice(run, start); werr != nil {
						return werr
					}
					return err
				}
			default:
				if err := s.writeDevice(run, start); err != nil {
					return err
				}
				if err := s.answer(at, dec); err != nil {
					return err
				}
				run = start + total
			}
			start += total
			s.reqBytes += int64(total)
		}
		if err := s.writeDevice(run, start); err != nil {
			return err
		}
		if start == end {
			start, end = 0, 0
		} else if len(s.reqBuf)-end < MaxADU {
			end = copy(s.reqBuf[:], s.reqBuf[start:end])
			start = 0
		}
		if rerr != nil {
			if rerr == io.EOF {
				if end > start {
					return &EndError{Direction: "client->device", Offset: s.reqBytes,
						Err: fmt.Errorf("%w: stream ended inside a frame (%d bytes of it received)", ErrMalformed, end-start)}
				}
				return nil
			}
			return rerr
		}
	}
}

// requestEnd forwards the frames judged before the bad one and returns
// the reason the session ends.
func (s *Session) requestEnd(run, bad int, err error) error {
	if werr := s.writeDevice(run, bad); werr != nil {
		return werr
	}
	return &EndError{Direction: "client->device", Offset: s.reqBytes, Err: err}
}

func (s *Session) writeDevice(from, to int) error {
	if from == to {
		return nil
	}
	if _, err := s.toDevice.Write(s.reqBuf[from:to]); err != nil {
		return fmt.Errorf("modbus session: write to device: %w", err)
	}
	return nil
}

// forward readies s.req, judged at at, for forwarding. The request is
// tracked as outstanding before its bytes are written, so its response
// always finds it; if that evicted a request whose record failed, it is
// not forwarded (the *RecordError is returned). Then a request that may
// change the device's state (RecordedBeforeForwarding) is handed to the
// sink as OutcomeForwarded, and if that fails it is not forwarded either.
// A request that is not forwarded leaves the table and has no record
// saying it was.
func (s *Session) forward(at time.Time, v Verdict, dec Decision) error {
	s.mu.Lock()
	slot := s.pending.put(&s.req, at, v, dec, s.evictFn)
	err := s.evictErr
	if err != nil {
		s.pending.release(slot)
	}
	s.mu.Unlock()
	if err != nil {
		return err
	}
	if RecordedBeforeForwarding(s.req.Function, s.req.SubFunction) {
		r := &s.fwdRec
		r.fillRequest(&s.req, at)
		r.Verdict, r.Outcome, r.Rule = v, OutcomeForwarded, dec.Rule
		if v == VerdictWouldDeny {
			r.DenyException, r.Reason = dec.Exception, dec.Reason
		}
		if err := s.record(r); err != nil {
			s.mu.Lock()
			s.pending.release(slot)
			s.mu.Unlock()
			return &RecordError{What: r.describe() + " (not forwarded)", Err: err}
		}
	}
	return nil
}

// evict records a request that will never be matched; s.mu is held. The
// caller releases its slot.
func (s *Session) evict(o *outstanding) {
	s.reqRec.fillRequest(&o.req, o.at)
	s.reqRec.Verdict, s.reqRec.Outcome = o.verdict, OutcomeNoResponse
	s.reqRec.Rule, s.reqRec.Reason = o.dec.Rule, o.dec.Reason
	if o.verdict == VerdictWouldDeny {
		s.reqRec.DenyException = o.dec.Exception
	}
	if err := s.record(&s.reqRec); err != nil && s.evictErr == nil {
		s.evictErr = &RecordError{What: s.reqRec.describe() + " -> no response", Err: err}
	}
}

// record hands r to the sink, one call at a time.
func (s *Session) record(r *Record) error {
	s.sinkMu.Lock()
	err := s.cfg.Sink.Record(r)
	s.sinkMu.Unlock()
	return err
}

// answer sends the gate's exception response for the denied s.req and
// records it. The denial is recorded even when the exception cannot be
// written (the client or the device has gone): then with
// OutcomeNoResponse, since no answer reached the client.
func (s *Session) answer(at time.Time, dec Decision) error {
	frame := AppendException(s.excBuf[:0], &s.req, dec.Exception)
	s.clientMu.Lock()
	for s.midFrame && s.clientErr == nil {
		s.clientCond.Wait()
	}
	werr := s.clientErr
	if werr == nil {
		_, werr = s.toClient.Write(frame)
	}
	s.clientMu.Unlock()
	s.mu.Lock() // s.reqRec is also evict's, which runs under s.mu
	s.reqRec.fillRequest(&s.req, at)
	s.reqRec.Verdict, s.reqRec.Outcome = VerdictDenied, OutcomeException
	if werr == nil {
		s.reqRec.ResponseTime = s.now()
	} else {
		s.reqRec.Outcome = OutcomeNoResponse
	}
	s.reqRec.Exception, s.reqRec.DenyException = dec.Exception, dec.Exception
	s.reqRec.Rule, s.reqRec.Reason = dec.Rule, dec.Reason
	if err := s.record(&s.reqRec); err != nil {
		s.mu.Unlock()
		return &RecordError{What: s.reqRec.describe() + " -> denied", Err: err}
	}
	s.mu.Unlock()
	if werr != nil {
		return fmt.Errorf("modbus session: write exception to client: %w", werr)
	}
	return nil
}

// Responses forwards the device's stream to the client as bytes arrive
// and follows it frame by frame to match and record responses. It returns
// nil at EOF, an *EndError if the stream cannot be followed (a bad MBAP
// header: the bytes are already forwarded, the session must end), or the
// I/O error.
func (s *Session) Responses(from io.Reader) error {
	// However it returns, an exception waiting for the frame boundary
	// (answer) must not wait for a device stream that has ended: a bad
	// header or a failed record leaves a frame half-forwarded.
	defer func() {
		s.clientMu.Lock()
		if s.clientErr == nil {
			s.clientErr = errors.New("device stream no longer followed")
		}
		s.clientCond.Broadcast()
		s.clientMu.Unlock()
	}()
	for {
		n, rerr := from.Read(s.respBuf[:])
		if n > 0 {
			s.clientMu.Lock()
			_, werr := s.toClient.Write(s.respBuf[:n])
			ferr := s.follow.feed(s.respBuf[:n], s.onFrameFn)
			s.midFrame = s.follow.have > 0
			if werr != nil {
				s.clientErr = werr
			}
			if !s.midFrame || s.clientErr != nil {
				s.clientCond.Broadcast()
			}
			s.clientMu.Unlock()
			if werr != nil {
				return fmt.Errorf("modbus session: write to client: %w", werr)
			}
			if ferr != nil {
				return ferr
			}
			if s.respErr != nil {
				return s.respErr
			}
		}
		if rerr != nil {
			s.clientMu.Lock()
			if s.clientErr == nil {
				s.clientErr = fmt.Errorf("device stream ended: %w", rerr)
			}
			s.clientCond.Broadcast()
			s.clientMu.Unlock()
			if rerr == io.EOF {
				return nil
			}
			return rerr
		}
	}
}

// onResponse handles one complete response frame (clientMu held). The
// record is filled under s.mu and handed to the sink after releasing it:
// the request direction (track) never waits for the log.
func (s *Session) onResponse(frame []byte) {
	at := s.now()
	perr := s.resp.Parse(frame)
	tid := be16(frame)
	rec := &s.respRec
	s.mu.Lock()
	o := s.pending.take(tid, frame[6])
	if o == nil {
		s.mu.Unlock()
		*rec = Record{ResponseTime: at, TransactionID: tid, Unit: frame[6],
			Function: Function(frame[HeaderLen] &^ exceptionBit), Outcome: OutcomeUnsolicited}
		if perr != nil {
			rec.Outcome, rec.Reason = OutcomeMalformed, perr.Error()
		} else if s.resp.Exception != 0 {
			rec.Exception = s.resp.Exception
		}
		s.recordResponse(rec)
		return
	}
	rec.fillRequest(&o.req, o.at)
	// Written and Refs alias the slot's frame, which a new request may
	// reuse once s.mu is released: keep a copy (a record has one or the
	// other, never both, so they share the buffer).
	switch {
	case rec.Written != nil:
		rec.Written = append(s.respWritten[:0], rec.Written...)
	case rec.Refs != nil:
		rec.Refs = append(s.respWritten[:0], rec.Refs...)
	}
	rec.Verdict, rec.Rule = o.verdict, o.dec.Rule
	if o.verdict == VerdictWouldDeny {
		rec.Reason = o.dec.Reason
	}
	if perr == nil {
		perr = s.resp.Match(&o.req)
	}
	if perr != nil {
		rec.ResponseTime, rec.Outcome, rec.Reason = at, OutcomeMalformed, perr.Error()
	} else {
		rec.fillResponse(&s.resp, at)
	}
	if o.verdict == VerdictWouldDeny {
		rec.DenyException = o.dec.Exception
	}
	s.pending.release(o)
	idle := s.pending.count() == 0
	s.mu.Unlock()
	s.recordResponse(rec)
	if idle {
		select {
		case s.idle <- struct{}{}:
		default:
		}
	}
}

// recordResponse hands the record of a response to the sink; a failure
// ends the session (Responses returns it).
func (s *Session) recordResponse(rec *Record) {
	if err := s.record(rec); err != nil && s.respErr == nil {
		s.respErr = &RecordError{What: rec.describe(), Err: err}
	}
}

// Outstanding returns the number of forwarded requests awaiting a response.
func (s *Session) Outstanding() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pending.count()
}

// Finish records every request still outstanding as OutcomeNoResponse.
// Call it once Requests and Responses have both returned. It returns the
// first record the sink failed to keep (a *RecordError), here or in an
// earlier eviction.
func (s *Session) Finish() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		o := s.pending.oldest()
		if o == nil {
			return s.evictErr
		}
		s.evict(o)
		s.pending.release(o)
	}
}
