package segment

import (
	"fmt"

	"github.com/otgate/otgate/services/overlay/alloc"
)

// WithOverlayState names the overlay allocator's state file (normally
// alloc.DefaultStatePath), from which show takes each asset's allocated
// endpoint. "" (the default) shows pinned endpoints only.
func WithOverlayState(path string) Option { return func(s *Service) { s.overlayState = path } }

// ReadOverlayEndpoints reads the overlay allocator's persisted table at
// path, read-only (alloc.ReadTable: one whole version of the file,
// checked by alloc's own decoder; nothing in the overlay's directory is
// touched): asset name -> overlay address. A missing file (overlay has
// allocated nothing yet) is an empty table.
func ReadOverlayEndpoints(path string) (map[string]string, error) {
	table, err := alloc.ReadTable(path)
	if err != nil {
		return nil, fmt.Errorf("overlay table: %w", err)
	}
	out := make(map[string]string, len(table))
	for _, e := range table {
		out[e.Asset] = e.Addr.String()
	}
	return out, nil
}
