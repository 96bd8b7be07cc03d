package client

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// CredentialSwitch is a new login's credential that Follow took for the
// session's new connections.
type CredentialSwitch struct {
	Gate, User string
	// NotAfter is the new certificate's end, Was the old one's.
	NotAfter, Was time.Time
}

// NotFollowedError is a credential stored in the profile since the
// session opened that Follow did not take: another gate's or user's (a
// login with the same profile elsewhere), one already expired, or one
// that could not be read (Err: an *UnprotectedError, a damaged file).
// The session keeps the credential it has.
type NotFollowedError struct {
	Dir string
	// Gate and User are the stored credential's (empty when Err).
	Gate, User string
	// Why it was not taken, when Err is nil.
	Why string
	// Expired: Why is that it expired (a new connect would not take it
	// either).
	Expired bool
	Err     error
	// Keep is the session's own: gate, user and end.
	KeepGate, KeepUser string
	KeepUntil          time.Time
}

func (e *NotFollowedError) Error() string {
	what := fmt.Sprintf("the profile %s holds a new credential", e.Dir)
	if e.Err != nil {
		what += fmt.Sprintf(" that cannot be used (%v)", e.Err)
	} else {
		what += fmt.Sprintf(" for %s at %s, not taken: %s", e.User, e.Gate, e.Why)
	}
	return fmt.Sprintf("%s; new connections keep the credential of %s for %s, valid until %s",
		what, e.KeepUser, e.KeepGate, e.KeepUntil.Local().Format("2006-01-02 15:04:05 MST"))
}

func (e *NotFollowedError) Unwrap() error { return e.Err }

// Follow takes for the session's new connections a credential a new login
// stored in its profile since (after the old one expired, was revoked,
// or to renew it), when it is for the same gate (address, pin and CA
// file) and the same user, and closed to others (see Open). Connections
// open already keep the credential they were made with.
//
// It returns the switch, or a *NotFollowedError for a stored credential
// it did not take (reported once; the session keeps its own), or nothing
// when the profile holds the same credential, or none (a logout, or a
// login under way: the certificate file is written last).
func (s *Session) Follow() (*CredentialSwitch, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	path := filepath.Join(s.Dir, CertFile)
	fi, err := os.Stat(path)
	if err != nil || sameVersion(fi, s.certInfo) || sameVersion(fi, s.skipped) {
		return nil, nil
	}
	c, err := readCredential(s.Dir, true)
	if errors.Is(err, ErrNoProfile) {
		return nil, nil
	}
	keep := &NotFollowedError{Dir: s.Dir, KeepGate: s.Profile.Gate, KeepUser: certUser(s.cert, s.Profile), KeepUntil: s.notAfterLocked()}
	if err != nil {
		s.skipped = fi
		keep.Err = err
		return nil, keep
	}
	if bytes.Equal(c.cert.Certificate[0], s.cert.Certificate[0]) {
		s.certInfo = c.certInfo // the same credential, written again
		return nil, nil
	}
	keep.Gate, keep.User = c.profile.Gate, certUser(c.cert, c.profile)
	switch {
	case c.profile.Gate != s.Profile.Gate:
		keep.Why = "this connect is for " + s.Profile.Gate
	case c.profile.Pin != s.Profile.Pin:
		keep.Why = "the gate's key pinned with it is not the one this connect checks (SHA-256 " + s.Profile.Pin + ")"
	case c.profile.CAFile != s.Profile.CAFile:
		keep.Why = fmt.Sprintf("it checks the gate with CA file %q, this connect with %q", c.profile.CAFile, s.Profile.CAFile)
	case c.profile.GateID != s.Profile.GateID:
		keep.Why = fmt.Sprintf("it is bound to gate identity %q, this connect to %q", c.profile.GateID, s.Profile.GateID)
	case keep.User != keep.KeepUser || c.profile.User != s.Profile.User:
		keep.Why = "this connect is " + keep.KeepUser + "'s"
	case !time.Now().Before(c.cert.Leaf.NotAfter):
		keep.Why, keep.Expired = "it expired at "+c.cert.Leaf.NotAfter.Local().Format("2006-01-02 15:04:05 MST"), true
	}
	if keep.Why != "" {
		s.skipped = c.certInfo
		return nil, keep
	}
	sw := &CredentialSwitch{Gate: s.Profile.Gate, User: keep.KeepUser, NotAfter: c.cert.Leaf.NotAfter, Was: s.notAfterLocked()}
	s.cert, s.certInfo = c.cert, c.certInfo
	// A resumed connection would present the old certificate again.
	s.resume = tls.NewLRUClientSessionCache(8)
	return sw, nil
}

// certUser is the user a credential is for: its certificate's (the gate
// names the user in it), else its profile's.
func certUser(c *tls.Certificate, p *Profile) string {
	if c.Leaf != nil && c.Leaf.Subject.CommonName != "" {
		return c.Leaf.Subject.CommonName
	}
	return p.User
}

// sameVersion says whether a and b are the same file as it was: a login
// writes a new file and renames it into place, and a file system may give
// the new file the number of the one it replaced.
func sameVersion(a, b fs.FileInfo) bool {
	return a != nil && b != nil && os.SameFile(a, b) && a.ModTime().Equal(b.ModTime()) && a.Size() == b.Size()
}
