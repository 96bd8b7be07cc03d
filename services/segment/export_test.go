package segment

import (
	"time"

	"github.com/google/nftables"
	"github.com/otgate/otgate/services/segment/ruleset"
)

// SetApply replaces the service's ruleset.Apply (a test makes it fail).
func SetApply(s *Service, f func(*nftables.Conn, *ruleset.Spec, time.Time) (*ruleset.Desired, error)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.apply = f
}
