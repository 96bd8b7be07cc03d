//go:build linux

package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/landlock-lsm/go-landlock/landlock"
	ll "github.com/landlock-lsm/go-landlock/landlock/syscall"
	"golang.org/x/sys/unix"
)

// Files is the part of the file system a service may reach once
// RestrictFiles ran. Paths are absolute; a directory stands for
// everything beneath it. Anything else is refused with EACCES, whatever
// the service's uid and the files' modes.
type Files struct {
	// Read: files and directories it may read and list.
	Read []string
	// ReadIfExists: like Read, for paths a board may lack (a directory
	// the image does not carry, a device without its driver).
	ReadIfExists []string
	// Write: files it may read and write, directories beneath which it
	// may also create, rename and remove (its state, its socket).
	Write []string
}

// The Landlock ABI the appliance's kernel has (Linux 6.1: version 2) is
// the one enforced everywhere, so that a service is confined alike on
// the device and on a newer development host. Version 2's rights cover
// opening (reading, writing, truncating at open), listing, creating,
// removing, renaming and linking, and executing; not truncate(2) of a
// path, ioctl, or connecting to a socket (versions 3, 5 and 9).
var filesABI = landlock.V2

// Rights of a Read rule: open for reading, list a directory. Not
// execute: no confined service runs another program.
const readAccess = landlock.AccessFSSet(ll.AccessFSReadFile | ll.AccessFSReadDir)

// Rights of a Write rule on a directory: everything of version 2 but
// execute and making device nodes (which need CAP_MKNOD besides).
const writeAccess = readAccess | landlock.AccessFSSet(ll.AccessFSWriteFile|
	ll.AccessFSRemoveDir|ll.AccessFSRemoveFile|ll.AccessFSMakeDir|ll.AccessFSMakeReg|
	ll.AccessFSMakeSock|ll.AccessFSMakeFifo|ll.AccessFSMakeSym|ll.AccessFSRefer)

// Rights of a Read rule on a file, and of a Write rule on a file: the
// ones a file can carry.
const readFileAccess = landlock.AccessFSSet(ll.AccessFSReadFile)
const writeFileAccess = landlock.AccessFSSet(ll.AccessFSReadFile | ll.AccessFSWriteFile)

// RestrictFiles confines every thread of the calling process (and what
// it starts later) to f, for the rest of its life, with a Landlock
// ruleset (and no_new_privs, which Landlock requires). It fails, and
// confines nothing, when the kernel lacks Landlock version 2, a path is
// relative, or a Read or Write path does not exist; the caller must then
// refuse to run. Call it after the service opened what it keeps open
// outside f (an open descriptor stays usable).
func RestrictFiles(f Files) error {
	// A rule names an inode. Where the file system makes a new inode when
	// it looks a path up again after the kernel dropped the dentry from
	// its cache (procfs does for /proc/sys; memory pressure or drop_caches
	// drops it), the rule would stop matching, and a sysctl the service
	// may write would be refused some day. Holding every rule's path open
	// (O_PATH) for the life of the process keeps its dentry, hence the
	// inode the rule names.
	var (
		rules []landlock.Rule
		held  []*os.File
		errs  []error
	)
	release := func() {
		for _, h := range held {
			h.Close()
		}
	}
	add := func(paths []string, dirAccess, fileAccess landlock.AccessFSSet, optional bool) {
		for _, p := range paths {
			if !filepath.IsAbs(p) {
				errs = append(errs, fmt.Errorf("sandbox: path %q is not absolute", p))
				continue
			}
			st, err := os.Stat(p)
			if err != nil {
				if !optional || !errors.Is(err, os.ErrNotExist) {
					errs = append(errs, fmt.Errorf("sandbox: %w", err))
				}
				continue
			}
			fd, err := unix.Open(p, unix.O_PATH|unix.O_CLOEXEC, 0)
			if err != nil {
				errs = append(errs, fmt.Errorf("sandbox: hold %s: %w", p, err))
				continue
			}
			held = append(held, os.NewFile(uintptr(fd), p))
			access := dirAccess
			if !st.IsDir() {
				access = fileAccess // a file's rule takes only a file's rights
			}
			rules = append(rules, landlock.PathAccess(access, p))
		}
	}
	add(f.Read, readAccess, readFileAccess, false)
	add(f.ReadIfExists, readAccess, readFileAccess, true)
	add(f.Write, writeAccess, writeFileAccess, false)
	if err := errors.Join(errs...); err != nil {
		release()
		return err
	}
	if err := filesABI.RestrictPaths(rules...); err != nil {
		release()
		return fmt.Errorf("sandbox: landlock: %w", err)
	}
	heldPaths.Lock()
	heldPaths.files = append(heldPaths.files, held...)
	heldPaths.Unlock()
	return nil
}

// heldPaths keeps the paths of the rules open (see RestrictFiles).
var heldPaths struct {
	sync.Mutex
	files []*os.File
}

// String describes f for a service's start-up line.
func (f Files) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "read %s", strings.Join(append(append([]string(nil), f.Read...), f.ReadIfExists...), " "))
	fmt.Fprintf(&b, "; write %s", strings.Join(f.Write, " "))
	return b.String()
}
