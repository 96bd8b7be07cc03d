package proxy

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"sync"

	"github.com/otgate/otgate/audit"
	"github.com/otgate/otgate/services/overlay/alloc"
	"github.com/otgate/otgate/services/proxy/wire"
)

// Endpoints tells which asset an overlay address stands for: each asset
// has one stable overlay endpoint (services/overlay), and a Modbus/TCP
// Security connection to it is a session to that asset.
type Endpoints interface {
	// Asset returns the asset whose endpoint addr is (ok false: none's).
	// An error means the table could not be read: the connection is
	// then refused (fail closed).
	Asset(addr netip.Addr) (asset string, ok bool, err error)
	// Endpoint returns the asset's endpoint (ok false: it has none), for
	// `otgate assets`.
	Endpoint(asset string) (addr netip.Addr, ok bool, err error)
}

// modbusSecurity is what `otgate assets` says of the Modbus/TCP Security
// listener: its port and endpoint table.
type modbusSecurity struct {
	port uint16
	eps  Endpoints
}

// ServeModbusSecurity accepts Modbus/TCP Security on ln until Close: a
// Modbus client (SCADA, an engineering tool, pymodbus) connects with TLS
// 1.3 to an asset's overlay endpoint, port 802, presenting the short-lived
// certificate and key `otgate login` stored for its user. The endpoint the
// connection reached names the asset (eps); from there the session is an
// `otgate connect` tunnel's to that asset over modbus: the certificate
// checked on every connection, the policy's decision, the start record
// durable before the asset is dialled, every request inspected and
// recorded decoded, the same limits and ends. What the tunnel tells its
// client in a reply frame, a Modbus client cannot read: a refused
// connection is closed (the reason is in the audit log), a refused request
// gets the Modbus exception a device would give. ln is a plain TCP
// listener; the handshake is done here, with the gate's certificate.
func (s *Server) ServeModbusSecurity(ln net.Listener, eps Endpoints) error {
	if eps == nil {
		return errors.New("proxy: Modbus/TCP Security needs the overlay endpoint table")
	}
	if ap, err := netip.ParseAddrPort(ln.Addr().String()); err == nil {
		s.mbs.Store(&modbusSecurity{port: ap.Port(), eps: eps})
	}
	cfg := s.tls.Clone()
	// Modbus/TCP Security names no ALPN protocol; a client's offer is
	// ignored.
	cfg.NextProtos = nil
	// No TLS 1.3 session tickets: each connection presents its
	// certificate in a full handshake, and a ticket arriving after the
	// handshake wakes clients that wait with select(2) on the raw socket
	// (pymodbus's ModbusTlsClient) with nothing to read: their read
	// fails ("the operation did not complete").
	cfg.SessionTicketsDisabled = true
	return s.serve(ln, func(c net.Conn) { s.handleModbusSecurity(c, cfg, eps) })
}

func (s *Server) handleModbusSecurity(c net.Conn, cfg *tls.Config, eps Endpoints) {
	tc, err := s.handshake(c, cfg)
	if err != nil {
		s.handshakeFailed("proxy: Modbus/TCP Security handshake with %s at %s: %v", c.RemoteAddr(), c.LocalAddr(), err)
		return
	}
	src := sourceOf(tc)
	ev := audit.Event{Source: src.String(), Protocol: "modbus"}
	local, err := netip.ParseAddrPort(c.LocalAddr().String())
	if err != nil {
		ev.Reason = fmt.Sprintf("Modbus/TCP Security: local address %s: %v", c.LocalAddr(), err)
		s.refuse(peer{tc: tc, endpoint: c.LocalAddr().String()}, ev, "")
		return
	}
	local = netip.AddrPortFrom(local.Addr().Unmap(), local.Port())
	p := peer{tc: tc, endpoint: local.String()}
	asset, ok, err := eps.Asset(local.Addr())
	switch {
	case err != nil:
		ev.Reason = fmt.Sprintf("Modbus/TCP Security at %s: the overlay endpoint table cannot be read: %v", local, err)
		s.refuse(p, ev, "")
		return
	case !ok:
		ev.Reason = fmt.Sprintf("Modbus/TCP Security at %s: that address is no asset's overlay endpoint", local)
		s.refuse(p, ev, "")
		return
	}
	s.serveSession(p, wire.Header{Asset: asset, Protocol: "modbus"}, src, ev)
}

// OverlayTable is the overlay allocator's table at Path (the overlay
// service's alloc.cbor), read-only, as the proxy's Endpoints. It is read
// again whenever the file changed (its size, time or inode), so an asset
// added or moved is served at its new endpoint from the next connection
// on, with no reload of the proxy.
type OverlayTable struct {
	Path string

	mu   sync.Mutex
	seen fs.FileInfo
	m    map[netip.Addr]string
	back map[string]netip.Addr
}

// Asset implements Endpoints.
func (t *OverlayTable) Asset(addr netip.Addr) (string, bool, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.refresh(); err != nil {
		return "", false, err
	}
	asset, ok := t.m[addr]
	return asset, ok, nil
}

// Endpoint implements Endpoints.
func (t *OverlayTable) Endpoint(asset string) (netip.Addr, bool, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.refresh(); err != nil {
		return netip.Addr{}, false, err
	}
	addr, ok := t.back[asset]
	return addr, ok, nil
}

// refresh reads the table again when the file changed (t.mu held).
func (t *OverlayTable) refresh() error {
	fi, err := os.Stat(t.Path)
	if errors.Is(err, fs.ErrNotExist) {
		// Nothing allocated yet (ReadTable's empty table); the mirror
		// alone would be a damaged state, which the overlay service
		// repairs at its start.
		t.seen, t.m, t.back = nil, nil, nil
		return nil
	}
	if err != nil {
		return err
	}
	if t.seen != nil && sameFile(t.seen, fi) {
		return nil
	}
	entries, err := alloc.ReadTable(t.Path)
	if err != nil {
		return err
	}
	m, back := make(map[netip.Addr]string, len(entries)), make(map[string]netip.Addr, len(entries))
	for _, e := range entries {
		m[e.Addr], back[e.Asset] = e.Asset, e.Addr
	}
	t.seen, t.m, t.back = fi, m, back
	return nil
}

// sameFile: the file was not replaced or changed since a was taken (the
// allocator replaces it by a rename, a new inode).
func sameFile(a, b fs.FileInfo) bool {
	return os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}
