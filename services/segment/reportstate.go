package segment

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/otgate/otgate/services/segment/ruleset"
)

// The would-block history is kept in a CBOR file so that the report survives
// restarts of the service and of the gate: every apply starts the kernel's
// record afresh, and the service is the one place that adds them up. The
// service (one process) is the file's only writer: it reads the file once,
// at start, and from then on its memory is the history and the file a copy.

// historyFile is the file's content: the history, and the kernel counters
// of the current table generation already added into it (so a restarted
// service does not count them twice); and each exception's packets and
// bytes counted by earlier table generations (excBase: the current
// generation's are still in the kernel's set, and added at the next apply).
type historyFile struct {
	History    []ruleset.WouldBlock `cbor:"1,keyasint"`
	Accounted  map[string][2]uint64 `cbor:"2,keyasint"`
	Exceptions map[string][2]uint64 `cbor:"3,keyasint,omitempty"`
}

// WithStateFile keeps the would-block history in path ("" keeps it in memory
// only).
func WithStateFile(path string) Option { return func(s *Service) { s.statePath = path } }

func (s *Service) loadHistoryLocked() {
	if s.statePath == "" {
		return
	}
	b, err := os.ReadFile(s.statePath)
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	var f historyFile
	if err == nil {
		err = decMode.Unmarshal(b, &f)
	}
	if err != nil {
		aside := s.statePath + ".corrupt"
		_ = os.Rename(s.statePath, aside)
		s.event("error", "would-block history %s unreadable (%v); moved to %s, starting empty", s.statePath, err, aside)
		return
	}
	s.stateOnDisk = sha256.Sum256(b)
	for i := range f.History {
		h := f.History[i]
		s.hist[h.Flow.String()] = &h
	}
	for k, v := range f.Accounted {
		s.gen[k] = v
	}
	if len(f.Exceptions) > 0 {
		s.excBase = f.Exceptions
	}
}

func (s *Service) saveHistoryLocked() error {
	if s.statePath == "" {
		return nil
	}
	hist := make([]ruleset.WouldBlock, 0, len(s.hist))
	for _, h := range s.hist {
		hist = append(hist, *h)
	}
	sort.Slice(hist, func(i, j int) bool { return hist[i].Flow.String() < hist[j].Flow.String() })
	b, err := encMode.Marshal(historyFile{History: hist, Accounted: s.gen, Exceptions: s.excBase})
	if err != nil {
		return fmt.Errorf("segment: encode would-block history: %w", err)
	}
	// The file holds these bytes already, as last read or written (a
	// boot, or an apply, that saw no new flow): leave it. Every write is a temporary file, two fsyncs
	// and a rename on the gate's flash.
	sum := sha256.Sum256(b)
	if sum == s.stateOnDisk {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(s.statePath), 0o700); err != nil {
		return fmt.Errorf("segment: would-block history dir: %w", err)
	}
	if err := writeAtomic(s.statePath, b); err != nil {
		return err
	}
	s.stateOnDisk = sum
	return nil
}
