package bootcfg

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// ErrBadCapability: a service row names an unknown capability, or asks for
// capabilities while running as root (root needs none and keeps all).
var ErrBadCapability = errors.New("bad capability")

// KnownCapabilities are the capabilities a service row may ask for, with
// their numbers (linux/capability.h). The list is short on purpose: add a
// capability only with a reason in the row that uses it.
var KnownCapabilities = map[string]uintptr{
	"CAP_NET_BIND_SERVICE": 10,
	"CAP_NET_ADMIN":        12,
	"CAP_NET_RAW":          13,
}

// CapabilityNumbers returns the numbers of the service's capabilities.
func (s *Service) CapabilityNumbers() ([]uintptr, error) {
	var out []uintptr
	for _, name := range s.Capabilities {
		n, ok := KnownCapabilities[name]
		if !ok {
			var known []string
			for k := range KnownCapabilities {
				known = append(known, k)
			}
			sort.Strings(known)
			return nil, fmt.Errorf("service %q: %w %q (known: %s)", s.Name, ErrBadCapability, name, strings.Join(known, ", "))
		}
		out = append(out, n)
	}
	return out, nil
}

func checkCapabilities(s *Service) error {
	if len(s.Capabilities) == 0 {
		return nil
	}
	if s.UID == 0 {
		return fmt.Errorf("service %q: %w: capabilities %v for a root service (root has them all; set UID)", s.Name, ErrBadCapability, s.Capabilities)
	}
	_, err := s.CapabilityNumbers()
	return err
}
