//go:build !windows

package client

import (
	"errors"
	"fmt"
	"os"
)

// restrictDir makes the profile directory the user's alone (0700), or
// refuses one that others may write in (checkDir).
func restrictDir(dir string) error {
	if err := checkDir(dir); err != nil {
		return err
	}
	return os.Chmod(dir, 0o700)
}

// checkDir refuses an existing directory of another user, or one that
// other users may write in (as ssh refuses such a ~/.ssh): they may have put a profile there
// already, pinning their own key for the gate, which a login would then
// enforce; and tightening one such as /tmp, given as --profile, would
// break it for everyone else.
func checkDir(dir string) error {
	st, err := os.Stat(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if uid, ok := fileOwner(st); ok && uid != os.Geteuid() {
		// Its owner could read the key, and chmod it back after us.
		return &UnprotectedError{Path: dir, Kind: kindDir, Mode: st.Mode(), Owner: uid, Own: os.Geteuid()}
	}
	mode := st.Mode()
	if mode&os.ModeSticky == 0 && mode.Perm()&0o022 == 0 {
		return nil
	}
	m := uint32(mode.Perm())
	if mode&os.ModeSticky != 0 {
		m |= 0o1000
	}
	return fmt.Errorf("profile directory %s is writable by other users (mode %04o): give a directory of your own (it is left as it is)", dir, m)
}
