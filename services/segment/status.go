package segment

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/otgate/otgate/services/segment/ruleset"
)

// DefaultSocket is the status socket's path.
const DefaultSocket = "/run/otgate/segment/segment.sock"

// Requests on the status socket.
const (
	OpShow   = "show"
	OpReport = "report"
	OpStatus = "status"
)

// Request is one CBOR request; the server answers with one Response and
// closes the connection.
type Request struct {
	Op string `cbor:"1,keyasint"`
}

// Response answers a Request. Error is set when the request failed.
type Response struct {
	Error  string               `cbor:"1,keyasint,omitempty"`
	Show   []AssetRule          `cbor:"2,keyasint,omitempty"`
	Report []ruleset.WouldBlock `cbor:"3,keyasint,omitempty"`
	Status *Status              `cbor:"4,keyasint,omitempty"`
	// Note qualifies a good answer (e.g. show without the overlay table).
	Note string `cbor:"5,keyasint,omitempty"`
}

// AssetRule is the effective rule of one asset, in words.
type AssetRule struct {
	Asset    string   `cbor:"1,keyasint" json:"asset"`
	Zone     string   `cbor:"2,keyasint" json:"zone"`
	Mode     string   `cbor:"3,keyasint" json:"mode"`
	Address  string   `cbor:"4,keyasint" json:"address"`
	Endpoint string   `cbor:"5,keyasint,omitempty" json:"endpoint,omitempty"`
	Ports    []uint16 `cbor:"6,keyasint" json:"tcp_ports"`
	Reachers []string `cbor:"7,keyasint" json:"reachable_by"`
}

// Show describes what may reach each asset under spec at now. An asset's
// endpoint is its entry in endpoints (asset name -> overlay address, the
// overlay allocator's table, see ReadOverlayEndpoints), else its pinned
// address from the spec.
func Show(spec *ruleset.Spec, now time.Time, endpoints map[string]string) []AssetRule {
	id := fmt.Sprintf("the proxy (socket uid %d", spec.Proxy.UID)
	if spec.Proxy.Mark != 0 {
		id += fmt.Sprintf(" and mark %#x", spec.Proxy.Mark)
	}
	id += ")"
	var out []AssetRule
	for _, a := range spec.Assets {
		r := AssetRule{Asset: a.Name, Zone: a.Zone, Mode: a.Mode, Address: a.Address, Endpoint: a.Endpoint,
			Ports: append([]uint16(nil), a.TCPPorts...)}
		if ep, ok := endpoints[a.Name]; ok {
			r.Endpoint = ep
		}
		sort.Slice(r.Ports, func(i, j int) bool { return r.Ports[i] < r.Ports[j] })
		var ports []string
		for _, p := range r.Ports {
			ports = append(ports, fmt.Sprintf("tcp/%d", p))
		}
		if len(ports) > 0 {
			r.Reachers = append(r.Reachers, fmt.Sprintf("%s on %s", id, strings.Join(ports, ", ")))
		}
		for _, e := range spec.Active(now) {
			if e.To == a.Address {
				r.Reachers = append(r.Reachers, fmt.Sprintf("%s on %s/%d by exception %s (owner %s, until %s)",
					e.From, e.Protocol, e.Port, e.ID, e.Owner, e.Expires.UTC().Format(time.RFC3339)))
			}
		}
		if a.Mode == ruleset.ModeMonitor {
			r.Reachers = append(r.Reachers, "anyone else too: monitor mode passes, counts and logs what enforce mode would drop")
		}
		if len(r.Reachers) == 0 {
			r.Reachers = []string{"nobody"}
		}
		out = append(out, r)
	}
	return out
}

// Serve answers requests on ln until it is closed.
func (s *Service) Serve(ln net.Listener) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		go s.answer(c)
	}
}

func (s *Service) answer(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	var req Request
	if err := decMode.NewDecoder(c).Decode(&req); err != nil {
		s.reply(c, Response{Error: fmt.Sprintf("bad request: %v", err)})
		return
	}
	var resp Response
	switch req.Op {
	case OpShow:
		var eps map[string]string
		if s.overlayState != "" {
			var err error
			if eps, err = ReadOverlayEndpoints(s.overlayState); err != nil {
				resp.Note = fmt.Sprintf("overlay endpoints shown only where pinned: %v", err)
				s.logf("segment: show: %v", err)
			}
		}
		resp.Show = Show(s.Spec(), time.Now(), eps)
	case OpReport:
		rep, err := s.Report()
		if err != nil {
			resp.Error = err.Error()
		}
		resp.Report = rep
	case OpStatus:
		st, err := s.Status()
		if err != nil {
			resp.Error = err.Error()
		}
		resp.Status = st
	default:
		resp.Error = fmt.Sprintf("unknown op %q (want %s, %s or %s)", req.Op, OpShow, OpReport, OpStatus)
	}
	s.reply(c, resp)
}

func (s *Service) reply(c net.Conn, r Response) {
	b, err := encMode.Marshal(r)
	if err != nil {
		b, _ = encMode.Marshal(Response{Error: "encode: " + err.Error()})
	}
	if _, err := c.Write(b); err != nil {
		s.logf("segment: status reply: %v", err)
	}
}

// ListenSocket removes a stale socket file and listens at path (mode 0600).
func ListenSocket(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("segment: socket dir: %w", err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("segment: remove stale socket %s: %w", path, err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("segment: listen %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("segment: chmod %s: %w", path, err)
	}
	return ln, nil
}

// Query sends one request to the status socket at path.
func Query(path, op string) (*Response, error) {
	c, err := net.DialTimeout("unix", path, 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("segment: status socket %s: %w (is otgate-segment running?)", path, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	b, err := encMode.Marshal(Request{Op: op})
	if err != nil {
		return nil, err
	}
	if _, err := c.Write(b); err != nil {
		return nil, fmt.Errorf("segment: send to %s: %w", path, err)
	}
	var resp Response
	if err := decMode.NewDecoder(c).Decode(&resp); err != nil {
		return nil, fmt.Errorf("segment: read from %s: %w", path, err)
	}
	if resp.Error != "" {
		return &resp, fmt.Errorf("segment: %s: %s", op, resp.Error)
	}
	return &resp, nil
}
