package netconf

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/otgate/otgate/internal/atomicfile"
)

// DefaultResolvConf is the resolver file the service owns.
const DefaultResolvConf = "/run/otgate/netconf/resolv.conf"

// Resolver writes the DNS settings of the uplink.
type Resolver struct {
	// Path is always written (DefaultResolvConf).
	Path string
	// Etc is also written when it is writable (e.g. /etc/resolv.conf);
	// empty: never. A symlink to Path is left as it is.
	Etc string
	// EtcInPlace writes Etc in place (opened without creating it,
	// truncated, written) instead of as a new file renamed over it: a
	// service confined to that one file (Confinement) may not create
	// files in its directory. The file keeps its inode, so a reader
	// confined to it by its own rule keeps reading it; one that reads
	// it at the moment it is rewritten can find it empty (as when it
	// is missing: the resolver's defaults), once.
	EtcInPlace bool
	Logf       func(string, ...any)

	etcWarned bool
}

// ResolvContent renders a resolv.conf.
func ResolvContent(source string, servers []netip.Addr, search []string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "# written by otgate-netconf (%s)\n", source)
	if len(search) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(search, " "))
	}
	for i, s := range servers {
		if i == 3 { // the resolver reads at most three
			break
		}
		fmt.Fprintf(&b, "nameserver %s\n", s)
	}
	return []byte(b.String())
}

// Write stores the settings in Path and, if possible, Etc.
func (r *Resolver) Write(source string, servers []netip.Addr, search []string) error {
	if r.Path == "" {
		return nil
	}
	data := ResolvContent(source, servers, search)
	if err := os.MkdirAll(filepath.Dir(r.Path), 0o755); err != nil {
		return fmt.Errorf("netconf: %w", err)
	}
	if err := atomicfile.Write(r.Path, data, 0o644); err != nil {
		return fmt.Errorf("netconf: write %s: %w", r.Path, err)
	}
	if r.Etc == "" {
		return nil
	}
	if target, err := filepath.EvalSymlinks(r.Etc); err == nil {
		if own, err := filepath.EvalSymlinks(r.Path); err == nil && own == target {
			return nil
		}
	}
	write := atomicfile.Write
	if r.EtcInPlace {
		write = writeInPlace
	}
	if err := write(r.Etc, data, 0o644); err != nil {
		if errors.Is(err, os.ErrPermission) || strings.Contains(err.Error(), "read-only") ||
			(r.EtcInPlace && (errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ELOOP))) {
			if !r.etcWarned && r.Logf != nil {
				r.Logf("netconf: %s is not writable (%v); DNS settings are in %s only", r.Etc, err, r.Path)
			}
			r.etcWarned = true
			return nil
		}
		return fmt.Errorf("netconf: write %s: %w", r.Etc, err)
	}
	return nil
}

// writeInPlace replaces the content of the existing file path (never a
// symlink, never a new file: O_NOFOLLOW, no O_CREAT).
func writeInPlace(path string, data []byte, _ os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
