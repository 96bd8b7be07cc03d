package plant

import (
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/otgate/otgate/inspect/modbus"
)

// Server serves a Tank over Modbus/TCP.
type Server struct {
	Tank *Tank
	Unit uint8       // the unit id answered (1 by default)
	Log  *log.Logger // connection events (nil: silent)

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// Serve accepts connections on l until l is closed, serving each in its
// own goroutine; when l closes it closes them and waits for them to end.
// An accept error that passes (out of file descriptors or buffers, a
// connection aborted in the backlog) is retried after a pause growing to
// 1 s: a flood of clients must not end the service for the others. Any
// other accept error ends Serve the same way as a close, with the error.
func (s *Server) Serve(l net.Listener) error {
	defer s.wg.Wait()
	var pause time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				s.closeConns()
				return nil
			}
			if retryAccept(err) {
				pause = min(max(2*pause, 5*time.Millisecond), time.Second)
				if s.Log != nil {
					s.Log.Printf("plant: accept on %s: %v; retrying in %v", l.Addr(), err, pause)
				}
				time.Sleep(pause)
				continue
			}
			s.closeConns()
			return fmt.Errorf("plant: accept on %s: %w", l.Addr(), err)
		}
		pause = 0
		s.mu.Lock()
		if s.conns == nil {
			s.conns = map[net.Conn]struct{}{}
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			err := s.ServeConn(c)
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
			if s.Log != nil {
				s.Log.Printf("plant: %s: connection ended: %v", c.RemoteAddr(), err)
			}
		}()
	}
}

// retryAccept says whether an accept error passes with time.
func retryAccept(err error) bool {
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

func (s *Server) closeConns() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.Close()
	}
}

// ServeConn answers requests on c, one at a time in arrival order, until
// c ends or a frame is malformed (its MBAP header, length or function
// layout broken: the connection is then closed, as a device does). A
// well-framed request with illegal values gets exception 02 or 03 and
// the connection goes on. It returns nil at EOF.
func (s *Server) ServeConn(c net.Conn) error {
	defer c.Close()
	var in [modbus.MaxADU]byte
	var out [modbus.MaxADU]byte
	var req modbus.Request
	unit := s.Unit
	if unit == 0 {
		unit = 1
	}
	for {
		if _, err := io.ReadFull(c, in[:modbus.HeaderLen]); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		h, err := modbus.ParseHeader(in[:modbus.HeaderLen])
		if err != nil {
			return err
		}
		n := h.FrameLen()
		if _, err := io.ReadFull(c, in[modbus.HeaderLen:n]); err != nil {
			return err
		}
		var resp []byte
		if err := req.Parse(in[:n]); err != nil {
			// A request framed correctly with values the specification
			// forbids (a quantity out of range, a coil value other than
			// on/off, a byte count not matching the quantity) is answered
			// with the exception the specification names; the connection
			// goes on. Only a frame that breaks the framing ends it.
			var fe *modbus.FieldError
			if !errors.Is(err, modbus.ErrIllegalRequest) || !errors.As(err, &fe) || fe.Exception == 0 {
				return err
			}
			if req.Header.Unit != unit {
				resp = modbus.AppendException(out[:0], &req, modbus.ExGatewayTargetNoResponse)
			} else {
				resp = modbus.AppendException(out[:0], &req, fe.Exception)
			}
		} else {
			resp = s.handle(out[:0], &req, unit)
		}
		if _, err := c.Write(resp); err != nil {
			return err
		}
	}
}

// handle builds the response ADU to req in dst.
func (s *Server) handle(dst []byte, req *modbus.Request, unit uint8) []byte {
	if req.Header.Unit != unit {
		return modbus.AppendException(dst, req, modbus.ExGatewayTargetNoResponse)
	}
	pdu, exc := s.Tank.serve(dst[modbus.HeaderLen:modbus.HeaderLen], req)
	if exc != 0 {
		return modbus.AppendException(dst, req, exc)
	}
	dst = dst[:modbus.HeaderLen+len(pdu)]
	tid, n := req.Header.TransactionID, len(pdu)+1
	dst[0], dst[1], dst[2], dst[3] = byte(tid>>8), byte(tid), 0, 0
	dst[4], dst[5], dst[6] = byte(n>>8), byte(n), req.Header.Unit
	return dst
}
