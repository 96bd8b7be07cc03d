// Package segment is the segment service: it keeps the kernel's nftables
// ruleset equal to the desired one (a reconcile loop from a Spec file to
// the kernel), repairs drift, expires exceptions, keeps the monitor-mode
// "would have blocked" report, and answers status requests on a unix
// socket. The ruleset itself is built by package ruleset.
package segment

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/otgate/otgate/services/segment/ruleset"
	"github.com/otgate/otgate/site"
)

// MaxSpecExceptionLifetime bounds how far ahead an exception of a spec
// file may expire: the site file's default maximum exception lifetime
// (a spec file has no limits section to raise it).
const MaxSpecExceptionLifetime = site.DefaultMaxExceptionLifetime

var (
	encMode = func() cbor.EncMode {
		opts := cbor.CoreDetEncOptions()
		opts.Time = cbor.TimeRFC3339Nano // report times need sub-second precision
		m, err := opts.EncMode()
		if err != nil {
			panic(err)
		}
		return m
	}()
	decMode = func() cbor.DecMode {
		m, err := cbor.DecOptions{ExtraReturnErrors: cbor.ExtraDecErrorUnknownField}.DecMode()
		if err != nil {
			panic(err)
		}
		return m
	}()
)

// LoadSpec reads and validates a spec file: CBOR, or JSON when the name
// ends in ".json". Unknown fields are errors, and so is an exception
// expiring more than MaxSpecExceptionLifetime from now, or a missing
// enforce_interfaces beside an asset in monitor mode (checkFileSpec).
func LoadSpec(path string) (*ruleset.Spec, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("segment: spec: %w", err)
	}
	var s ruleset.Spec
	if strings.HasSuffix(path, ".json") {
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&s); err != nil {
			return nil, fmt.Errorf("segment: spec %s: %w", path, err)
		}
	} else if err := decMode.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("segment: spec %s: %w", path, err)
	}
	if err := checkFileSpec(&s, time.Now()); err != nil {
		return nil, fmt.Errorf("segment: spec %s: %w", path, err)
	}
	return &s, nil
}

// checkFileSpec is what a spec file must pass beyond Validate: exception
// expiries within bounds, and enforce_interfaces given when an asset is
// in monitor mode. The site file's path computes that list (sitespec);
// in a file written by hand, a missing one would leave every downlink
// open to the monitor zones' assets (fail open), so it is refused.
func checkFileSpec(s *ruleset.Spec, now time.Time) error {
	if err := s.Validate(); err != nil {
		return err
	}
	if err := checkExpiries(s, now); err != nil {
		return err
	}
	if s.EnforceInterfaces == nil {
		for i, a := range s.Assets {
			if a.Mode == ruleset.ModeMonitor {
				return fmt.Errorf("%w: enforce_interfaces: not given, and assets[%d] %q (zone %q) is in monitor mode: "+
					"list the downlinks that carry an enforce zone or no zone (every downlink but those of monitor zones alone), or [] when every downlink carries monitor zones alone",
					ruleset.ErrInvalidSpec, i, a.Name, a.Zone)
			}
		}
	}
	return nil
}

// checkExpiries refuses exceptions that expire more than
// MaxSpecExceptionLifetime after now, as the site file does (an expired
// one is allowed: it is never installed).
func checkExpiries(s *ruleset.Spec, now time.Time) error {
	var errs []error
	limit := now.Add(MaxSpecExceptionLifetime)
	for i, e := range s.Exceptions {
		if e.Expires.After(limit) {
			errs = append(errs, fmt.Errorf("exceptions[%d] %q: expiry %s is more than the maximum exception lifetime (%s) from now; limit: %s",
				i, e.ID, e.Expires.UTC().Format(time.RFC3339), MaxSpecExceptionLifetime, limit.UTC().Format(time.RFC3339)))
		}
	}
	return errors.Join(errs...)
}

// WriteSpec validates s (as LoadSpec does) and writes it as deterministic CBOR, atomically
// (temp file, fsync, rename, fsync of the directory).
func WriteSpec(path string, s *ruleset.Spec) error {
	if err := checkFileSpec(s, time.Now()); err != nil {
		return fmt.Errorf("segment: write spec %s: %w", path, err)
	}
	b, err := encMode.Marshal(s)
	if err != nil {
		return fmt.Errorf("segment: encode spec: %w", err)
	}
	return writeAtomic(path, b)
}

func writeAtomic(path string, b []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("segment: write %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after a successful rename
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("segment: write %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("segment: fsync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("segment: close %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("segment: rename %s: %w", path, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("segment: open dir %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("segment: fsync dir %s: %w", dir, err)
	}
	return nil
}
