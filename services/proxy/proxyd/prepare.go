package proxyd

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// prepare is the proxy's one-shot set-up, run as root by init before the
// proxy itself runs as an unprivileged uid: it creates the proxy's own
// directories owned by that uid (mode 0700) and lets the proxy's group
// read the applied policy (its directory becomes set-group-ID to that
// group, so a policy applied later is readable too). It is idempotent and
// refuses symlinks where it expects directories.
//
//	otgate-proxy prepare -uid 101 -gid 101 -own /perm/proxy -own /perm/audit -read /perm/policy
func prepare(args []string, log io.Writer) error {
	fs := flag.NewFlagSet("otgate-proxy prepare", flag.ContinueOnError)
	fs.SetOutput(log)
	uid := fs.Int("uid", -1, "the proxy's uid")
	gid := fs.Int("gid", -1, "the proxy's gid")
	var own, read listFlag
	fs.Var(&own, "own", "directory the proxy owns (created, mode 0700); repeatable")
	fs.Var(&read, "read", "directory whose files the proxy's group may read (mode 2750, files 0640); repeatable")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *uid <= 0 || *gid <= 0 {
		return fmt.Errorf("-uid %d -gid %d: want the proxy's non-root uid and gid", *uid, *gid)
	}
	for _, d := range own {
		if err := ownDir(d, *uid, *gid); err != nil {
			return err
		}
		fmt.Fprintf(log, "otgate-proxy prepare: %s owned by %d:%d, mode 0700\n", d, *uid, *gid)
	}
	for _, d := range read {
		n, err := groupReadable(d, *gid)
		if err != nil {
			return err
		}
		fmt.Fprintf(log, "otgate-proxy prepare: %s readable by group %d (%d files)\n", d, *gid, n)
	}
	return nil
}

func ownDir(dir string, uid, gid int) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	if err := checkDir(dir); err != nil {
		return err
	}
	if err := os.Lchown(dir, uid, gid); err != nil {
		return fmt.Errorf("chown %s: %w", dir, err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("chmod %s: %w", dir, err)
	}
	// Files a root tool left there (an admin's store copy) become the
	// proxy's too; a crash between runs leaves nothing half-owned that a
	// second run would not fix.
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("read %s: %w", dir, err)
	}
	for _, e := range ents {
		if err := os.Lchown(filepath.Join(dir, e.Name()), uid, gid); err != nil {
			return fmt.Errorf("chown %s: %w", filepath.Join(dir, e.Name()), err)
		}
	}
	return nil
}

func groupReadable(dir string, gid int) (int, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return 0, fmt.Errorf("create %s: %w", dir, err)
	}
	if err := checkDir(dir); err != nil {
		return 0, err
	}
	if err := os.Lchown(dir, 0, gid); err != nil {
		return 0, fmt.Errorf("chown %s: %w", dir, err)
	}
	if err := os.Chmod(dir, 0o750|os.ModeSetgid); err != nil {
		return 0, fmt.Errorf("chmod %s: %w", dir, err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", dir, err)
	}
	n := 0
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		p := filepath.Join(dir, e.Name())
		if err := os.Lchown(p, 0, gid); err != nil {
			return n, fmt.Errorf("chown %s: %w", p, err)
		}
		if err := os.Chmod(p, 0o640); err != nil {
			return n, fmt.Errorf("chmod %s: %w", p, err)
		}
		n++
	}
	return n, nil
}

func checkDir(dir string) error {
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		return fmt.Errorf("%s: %w", dir, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return fmt.Errorf("%s: not a directory (a symlink or file where the proxy's directory belongs)", dir)
	}
	return nil
}

type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(v string) error {
	if !filepath.IsAbs(v) {
		return errors.New("want an absolute path")
	}
	*l = append(*l, filepath.Clean(v))
	return nil
}
