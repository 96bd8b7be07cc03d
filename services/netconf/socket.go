package netconf

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/fxamacker/cbor/v2"
)

// DefaultSocket is where the service answers queries.
const DefaultSocket = "/run/otgate/netconf/netconf.sock"

// Operations of the socket.
const (
	OpStatus = "status" // Response.Status (with the inventory)
	OpEvents = "events" // Response.Events after Request.After
	OpAsset  = "asset"  // Response.Asset named Request.Asset (is it suspect?)
)

// Request is one CBOR request; the service answers with one Response
// and closes the connection.
type Request struct {
	Op    string `cbor:"1,keyasint"`
	After uint64 `cbor:"2,keyasint,omitempty"`
	Asset string `cbor:"3,keyasint,omitempty"`
}

// Response answers a Request; Error is set when it failed.
type Response struct {
	Error  string     `cbor:"1,keyasint,omitempty"`
	Status *Status    `cbor:"2,keyasint,omitempty"`
	Events []Event    `cbor:"3,keyasint,omitempty"`
	Asset  *AssetView `cbor:"4,keyasint,omitempty"`
}

// maxRequest bounds a request's size.
const maxRequest = 4096

var decMode = func() cbor.DecMode {
	m, err := cbor.DecOptions{ExtraReturnErrors: cbor.ExtraDecErrorUnknownField, MaxArrayElements: 1024, MaxMapPairs: 64}.DecMode()
	if err != nil {
		panic(err)
	}
	return m
}()

// listen opens the unix socket (mode 0600), replacing a stale socket
// file but never any other kind of file.
func listen(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("netconf: %w", err)
	}
	if st, err := os.Lstat(path); err == nil {
		if st.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("netconf: %s exists and is not a socket; refusing to replace it", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("netconf: remove stale socket: %w", err)
		}
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("netconf: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("netconf: %w", err)
	}
	return l, nil
}

func (s *Service) serve(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				s.Logf("netconf: accept: %v", err)
			}
			return
		}
		go s.answer(c)
	}
}

func (s *Service) answer(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	var req Request
	var resp Response
	if err := decMode.NewDecoder(io.LimitReader(c, maxRequest)).Decode(&req); err != nil {
		resp.Error = fmt.Sprintf("bad request: %v", err)
	} else {
		switch req.Op {
		case OpStatus:
			st := s.Status()
			resp.Status = &st
		case OpEvents:
			resp.Events, _ = s.events.Since(req.After)
		case OpAsset:
			if a, ok := s.inv.Asset(req.Asset); ok {
				resp.Asset = &a
			} else {
				resp.Error = fmt.Sprintf("unknown asset %q", req.Asset)
			}
		default:
			resp.Error = fmt.Sprintf("unknown op %q (want %s, %s or %s)", req.Op, OpStatus, OpEvents, OpAsset)
		}
	}
	b, err := encMode.Marshal(resp)
	if err != nil {
		b, _ = encMode.Marshal(Response{Error: "encode: " + err.Error()})
	}
	if _, err := c.Write(b); err != nil {
		s.Logf("netconf: reply: %v", err)
	}
}

// Query sends one request to the service's socket and returns its answer;
// an answer carrying an error is returned as an error.
func Query(ctx context.Context, path string, req Request) (*Response, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("netconf: %w (is otgate-netconf running?)", err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	b, err := encMode.Marshal(req)
	if err != nil {
		return nil, err
	}
	if _, err := c.Write(b); err != nil {
		return nil, fmt.Errorf("netconf: send to %s: %w", path, err)
	}
	raw, err := io.ReadAll(io.LimitReader(c, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("netconf: read %s: %w", path, err)
	}
	var resp Response
	if err := cbor.Unmarshal(raw, &resp); err != nil {
		return nil, fmt.Errorf("netconf: decode answer from %s: %w", path, err)
	}
	if resp.Error != "" {
		return &resp, fmt.Errorf("netconf: %s", resp.Error)
	}
	return &resp, nil
}
