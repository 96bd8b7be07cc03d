package client

import (
	"fmt"
	"io/fs"
	"os"
)

// fileKind is what a path of a profile is, for checkOwn and its errors.
type fileKind int

const (
	kindDir     fileKind = iota // the profile directory
	kindKey                     // the private key
	kindProfile                 // gate.json: gate, pin, CA file, user
	kindCert                    // the certificate chain
	kindParent                  // a directory above the profile directory
)

// open is the group and other bits refused: any for the key (as ssh),
// read or write for the directory, write for the profile and the
// certificate (public, but a changed pin or certificate is someone
// else's gate or credential).
func (k fileKind) open() fs.FileMode {
	switch k {
	case kindKey:
		return 0o077
	case kindDir:
		return 0o066
	default:
		return 0o022
	}
}

// UnprotectedError refuses a profile directory or one of its files that
// another user owns or may read or change (Unix; on Windows the
// directory's DACL protects them). Nothing is sent with such a
// credential, and nothing is changed: the message says what to do.
type UnprotectedError struct {
	Path string
	Kind fileKind
	Mode fs.FileMode
	// Owner is the uid owning Path when it is not Own (this process's
	// effective uid), else -1: the mode is what is wrong.
	Owner, Own int
	// LogoutCmd is the command that ends the credential at the gate, as
	// the message tells it ("otgate logout" when empty).
	LogoutCmd string
	// Holds is the profile directory when Path is a directory above it
	// (checkParents), else "".
	Holds string
}

func (e *UnprotectedError) Error() string {
	logout := e.LogoutCmd
	if logout == "" {
		logout = "otgate logout"
	}
	if e.Kind == kindParent {
		if e.Owner >= 0 {
			return fmt.Sprintf("directory %s, above the profile directory %s, belongs to uid %d, not to you (uid %d) nor root: refused, as ssh refuses such a path "+
				"(its owner could put another profile in place of yours); give --profile a directory in a directory of your own", e.Path, e.Holds, e.Owner, e.Own)
		}
		return fmt.Sprintf("directory %s, above the profile directory %s, is writable by other users (mode %s): refused, as ssh refuses such a path "+
			"(they could rename the profile directory away and put theirs in its place); run chmod go-w %s, or give --profile a directory in a directory of your own, "+
			"and if anyone may have changed the credential, %s (it ends the credential at the gate) and log in again", e.Path, e.Holds, octal(e.Mode), e.Path, logout)
	}
	if e.Owner >= 0 {
		if e.Kind == kindDir {
			return fmt.Sprintf("profile directory %s belongs to uid %d, not to you (uid %d): refused; give a directory of your own", e.Path, e.Owner, e.Own)
		}
		return fmt.Sprintf("%s belongs to uid %d, not to you (uid %d): refused; log in again to replace it", e.Path, e.Owner, e.Own)
	}
	m := octal(e.Mode)
	switch e.Kind {
	case kindKey:
		return fmt.Sprintf("UNPROTECTED PRIVATE KEY: %s is accessible by other users (mode %s): refused, as ssh refuses such a key; "+
			"run chmod 600 %s, and if anyone may have copied it, %s (it ends the credential at the gate) and log in again", e.Path, m, e.Path, logout)
	case kindDir:
		return fmt.Sprintf("profile directory %s is open to other users (mode %s): refused; run chmod 700 %s, "+
			"and if anyone may have copied or changed the credential in it, %s (it ends the credential at the gate) and log in again", e.Path, m, e.Path, logout)
	default:
		return fmt.Sprintf("%s is writable by other users (mode %s): refused (the gate, pin and certificate of a profile must be yours alone); "+
			"run chmod 600 %s, and if anyone may have changed it, log in again", e.Path, m, e.Path)
	}
}

// checkOwn refuses a file or directory of the profile that belongs to
// another user, or whose mode gives group or others any of kind's open
// bits, as OpenSSH refuses an unprotected private key: login makes the
// directory 0700 and its files 0600, so anything else was done to them
// since, by someone.
func checkOwn(path string, fi fs.FileInfo, kind fileKind) error {
	if !modesProtect {
		return nil
	}
	if uid, ok := fileOwner(fi); ok && uid != os.Geteuid() {
		return &UnprotectedError{Path: path, Kind: kind, Mode: fi.Mode(), Owner: uid, Own: os.Geteuid()}
	}
	if fi.Mode().Perm()&kind.open() != 0 {
		return &UnprotectedError{Path: path, Kind: kind, Mode: fi.Mode(), Owner: -1}
	}
	return nil
}

// octal is a mode as chmod takes it: 0644, 1777.
func octal(mode fs.FileMode) string {
	m := uint32(mode.Perm())
	if mode&fs.ModeSetuid != 0 {
		m |= 0o4000
	}
	if mode&fs.ModeSetgid != 0 {
		m |= 0o2000
	}
	if mode&fs.ModeSticky != 0 {
		m |= 0o1000
	}
	return fmt.Sprintf("%04o", m)
}
