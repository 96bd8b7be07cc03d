package overlayd

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/otgate/otgate/internal/atomicfile"
	"github.com/otgate/otgate/internal/sandbox"
)

// confinement is what the running service may open, every path made
// absolute: read the applied policy's directory (re-read on SIGHUP and
// when it changes; the policy service replaces the file by a rename, so
// a rule on the file would stop matching at the first new policy) and
// the time zone if the image has one (the log's time stamps); write its
// state directory (the table and its mirror, each written as a temporary
// file renamed over it and the directory fsynced; leftover temporary
// files removed at start) and the socket's directory (the stale socket
// removed, the socket created). The socket's directory is the service's
// own on the device (/run/otgate/overlay): it cannot touch another
// service's socket.
func confinement(policy, state, socket string) (sandbox.Files, error) {
	if err := sandbox.Absolute(&policy, &state, &socket); err != nil {
		return sandbox.Files{}, err
	}
	return sandbox.Files{
		Read:         []string{filepath.Dir(policy)},
		ReadIfExists: []string{"/etc/localtime"},
		Write:        []string{filepath.Dir(state), filepath.Dir(socket)},
	}, nil
}

// confine creates the directories the service would create later (its
// state directory as the allocator does, 0700 and durably; the socket's)
// and confines the process to confinement. On an error the process is
// not confined and must not run.
func confine(policy, state, socket string) (sandbox.Files, error) {
	f, err := confinement(policy, state, socket)
	if err != nil {
		return f, err
	}
	if err := atomicfile.MkdirAll(f.Write[0], 0o700, nil); err != nil {
		return f, fmt.Errorf("-state: %w", err)
	}
	if err := os.MkdirAll(f.Write[1], 0o755); err != nil {
		return f, fmt.Errorf("-socket: %w", err)
	}
	return f, sandbox.RestrictFiles(f)
}
