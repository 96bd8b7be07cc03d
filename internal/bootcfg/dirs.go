package bootcfg

import (
	"fmt"
	"path/filepath"
)

// checkDirs validates a service's OwnedDirs and GroupReadDirs: absolute,
// clean, not "/", each named once, and a group to read with.
func checkDirs(s *Service) error {
	seen := map[string]bool{}
	check := func(field, p string) error {
		if !filepath.IsAbs(p) || filepath.Clean(p) != p || p == "/" {
			return fmt.Errorf("service %q: %s %q: want a clean absolute path below /", s.Name, field, p)
		}
		if seen[p] {
			return fmt.Errorf("service %q: %s %q: listed twice", s.Name, field, p)
		}
		seen[p] = true
		return nil
	}
	for _, p := range s.OwnedDirs {
		if err := check("owned directory", p); err != nil {
			return err
		}
	}
	for _, p := range s.GroupReadDirs {
		if err := check("group-readable directory", p); err != nil {
			return err
		}
	}
	if len(s.GroupReadDirs) > 0 && s.GID == 0 {
		return fmt.Errorf("service %q: group-readable directories %v: the service runs as group 0 (root), which reads them anyway; give it its own GID", s.Name, s.GroupReadDirs)
	}
	return nil
}
