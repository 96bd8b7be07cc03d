package segmentd

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/otgate/otgate/internal/atomicfile"
	"github.com/otgate/otgate/internal/sandbox"
)

// paths are the files the service runs with, from its flags.
type paths struct {
	Policy, Boot string // -policy, -boot (Policy "": -spec mode)
	Spec         string // -spec, read once at start without -policy
	State        string // -state ("": memory only)
	Socket       string // -socket
	OverlayState string // -overlay-state ("": none read)
	// Forwarding is the IPv4 forwarding sysctl (segment.ForwardingSysctl);
	// the reverse-path filters are in the conf directory beside it.
	Forwarding string
}

// confinement is what the running service may open, every path made
// absolute:
//
//   - read: the applied policy's directory (re-read on SIGHUP and when
//     the file changes; the policy service replaces the file by a rename,
//     so a rule on the file itself would stop matching at the first new
//     policy) and the boot config (its baseline), or without -policy the
//     spec file (read once); the overlay allocator's state directory
//     (its table and the table's mirror, replaced by renames too, read
//     for show, never written); the time zone, if the image has one;
//   - write: its state directory (the would-block history written as a
//     temporary file renamed over it, the directory fsynced, a damaged
//     history set aside as <state>.corrupt); the status socket's
//     directory (the stale socket removed, the socket created); the IPv4
//     forwarding switch, and the conf directory beside it, whose "all",
//     "default" and every interface's rp_filter it reads and repairs
//     (interfaces come and go, so it is the directory: it also reaches
//     the interfaces' other sysctls).
//
// The socket's directory is the service's own on the device
// (/run/otgate/segment): it cannot touch another service's socket.
//
// Its paths must be absolute (paths.abs).
func confinement(a paths) sandbox.Files {
	var f sandbox.Files
	if a.Policy != "" {
		f.Read = append(f.Read, filepath.Dir(a.Policy), a.Boot)
	} else {
		f.Read = append(f.Read, a.Spec)
	}
	if a.OverlayState != "" {
		f.Read = append(f.Read, filepath.Dir(a.OverlayState))
	}
	f.ReadIfExists = []string{"/etc/localtime"}
	if a.State != "" {
		f.Write = append(f.Write, filepath.Dir(a.State))
	}
	f.Write = append(f.Write, filepath.Dir(a.Socket), a.Forwarding, a.conf())
	return f
}

// abs is p with every path made absolute.
func (p paths) abs() (paths, error) {
	err := sandbox.Absolute(&p.Policy, &p.Boot, &p.Spec, &p.State, &p.Socket, &p.OverlayState, &p.Forwarding)
	return p, err
}

// conf is the directory of the reverse-path filters, beside the
// forwarding switch (as segment.SysctlForwarding finds it).
func (p paths) conf() string { return filepath.Join(filepath.Dir(p.Forwarding), "conf") }

// confine creates the directories the service would create later (its
// state directory, the socket's, the overlay's state directory, which
// the overlay makes at its first allocation, as it would: 0700, durably)
// and confines the process to confinement(p) (sandbox.RestrictFiles
// holds the sysctl paths open, so procfs keeps their inodes). On an
// error the process is not confined and must not run.
func confine(p paths) (sandbox.Files, error) {
	a, err := p.abs()
	if err != nil {
		return sandbox.Files{}, err
	}
	f := confinement(a)
	if a.State != "" {
		if err := atomicfile.MkdirAll(filepath.Dir(a.State), 0o700, nil); err != nil {
			return f, fmt.Errorf("-state: %w", err)
		}
	}
	if a.OverlayState != "" {
		if err := atomicfile.MkdirAll(filepath.Dir(a.OverlayState), 0o700, nil); err != nil {
			return f, fmt.Errorf("-overlay-state: %w", err)
		}
	}
	if err := os.MkdirAll(filepath.Dir(a.Socket), 0o755); err != nil {
		return f, fmt.Errorf("-socket: %w", err)
	}
	return f, sandbox.RestrictFiles(f)
}
