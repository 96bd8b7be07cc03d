//go:build linux

package sandbox

import (
	"errors"
	"path/filepath"
	"slices"
)

// Absolute makes each non-empty path absolute in place (a service's
// relative flags), for a Files list, whose paths must be absolute. An
// empty path ("": none) stays empty. The errors of all paths are joined.
func Absolute(paths ...*string) error {
	var errs []error
	for _, p := range paths {
		if *p == "" {
			continue
		}
		a, err := filepath.Abs(*p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		*p = a
	}
	return errors.Join(errs...)
}

// AddRead adds p to Read unless a list has it already.
func (f *Files) AddRead(p string) { f.add(&f.Read, p) }

// AddReadIfExists adds p to ReadIfExists unless a list has it already.
func (f *Files) AddReadIfExists(p string) { f.add(&f.ReadIfExists, p) }

// AddWrite adds p to Write unless a list has it already.
func (f *Files) AddWrite(p string) { f.add(&f.Write, p) }

func (f *Files) add(list *[]string, p string) {
	if slices.Contains(f.Read, p) || slices.Contains(f.ReadIfExists, p) || slices.Contains(f.Write, p) {
		return
	}
	*list = append(*list, p)
}
