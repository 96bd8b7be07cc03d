package overlay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/otgate/otgate/services/overlay/alloc"
)

// DefaultSocket is where the service serves its table.
const DefaultSocket = "/run/otgate/overlay/overlay.sock"

// Snapshot is what the socket serves: the allocation table and the
// service's health. A client connects and reads one CBOR Snapshot.
type Snapshot struct {
	// PolicySHA256 is the sha256 of the site file the table serves.
	PolicySHA256 [32]byte      `cbor:"1,keyasint"`
	Prefix       netip.Prefix  `cbor:"2,keyasint"`
	Gate         netip.Addr    `cbor:"3,keyasint"`
	Entries      []alloc.Entry `cbor:"4,keyasint"`
	Quarantined  []alloc.Held  `cbor:"5,keyasint"`
	Pools        []alloc.Pool  `cbor:"6,keyasint"`
	Warnings     []string      `cbor:"7,keyasint"`
	// Error is why the last sync failed; empty when healthy.
	Error string `cbor:"8,keyasint"`
	Link  string `cbor:"9,keyasint"`
	// Syncs counts completed sync attempts (clients wait on it).
	Syncs uint64 `cbor:"10,keyasint"`
}

var encMode = func() cbor.EncMode {
	m, err := cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		panic(err)
	}
	return m
}()

// listen opens the unix socket, replacing a stale socket file (never
// any other kind of file).
func listen(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("overlay: %w", err)
	}
	if st, err := os.Lstat(path); err == nil {
		if st.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("overlay: %s exists and is not a socket; refusing to replace it", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("overlay: remove stale socket: %w", err)
		}
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("overlay: %w", err)
	}
	return l, nil
}

// serve answers every connection with the current snapshot.
func serve(l net.Listener, snap func() Snapshot, logf func(string, ...any)) {
	for {
		c, err := l.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				logf("overlay: accept: %v", err)
			}
			return
		}
		go func() {
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			b, err := encMode.Marshal(snap())
			if err != nil {
				logf("overlay: encode snapshot: %v", err)
				return
			}
			if _, err := c.Write(b); err != nil {
				logf("overlay: write snapshot: %v", err)
			}
		}()
	}
}

// FetchSnapshot reads the service's snapshot from its socket.
func FetchSnapshot(ctx context.Context, path string) (*Snapshot, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("overlay: %w", err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	b, err := io.ReadAll(io.LimitReader(c, 256<<20))
	if err != nil {
		return nil, fmt.Errorf("overlay: read %s: %w", path, err)
	}
	var s Snapshot
	if err := cbor.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("overlay: decode snapshot from %s: %w", path, err)
	}
	return &s, nil
}
