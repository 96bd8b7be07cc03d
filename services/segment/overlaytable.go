package segment

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/otgate/otgate/services/overlay/alloc"
)

// WithOverlayState names the overlay allocator's state file (normally
// alloc.DefaultStatePath), from which show takes each asset's allocated
// endpoint. "" (the default) shows pinned endpoints only.
func WithOverlayState(path string) Option { return func(s *Service) { s.overlayState = path } }

// ReadOverlayEndpoints reads the overlay allocator's persisted table at
// path, read-only: asset name -> overlay address. A missing file (overlay
// has allocated nothing yet) is an empty table.
//
// alloc.Open is the table's only reader, and it also removes leftover
// temporary files of an interrupted write next to its path, which would
// race the overlay service's own writes. So it is given a private copy of
// the file: the bytes are read once (the overlay writes by rename, so they
// are one whole version) and checked by alloc's own decoder (checksum and
// invariants); nothing in the overlay's directory is touched.
func ReadOverlayEndpoints(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("overlay table: %w", err)
	}
	dir, err := os.MkdirTemp("", "otgate-segment-overlay-")
	if err != nil {
		return nil, fmt.Errorf("overlay table: %w", err)
	}
	defer os.RemoveAll(dir)
	cp := filepath.Join(dir, filepath.Base(path))
	if err := os.WriteFile(cp, b, 0o600); err != nil {
		return nil, fmt.Errorf("overlay table: %w", err)
	}
	a, err := alloc.Open(cp)
	if err != nil {
		return nil, fmt.Errorf("overlay table %s: %w", path, err)
	}
	out := map[string]string{}
	for _, e := range a.Table() {
		out[e.Asset] = e.Addr.String()
	}
	return out, nil
}
