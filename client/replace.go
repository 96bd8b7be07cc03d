package client

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Replaced is a credential of another gate, or of another user, that a
// login replaced in its profile directory (a profile holds one), and what
// became of it at its gate: once the new credential is stored, Login asks
// the old gate to invalidate it, as a logout would, so that no credential
// stays valid that no file on this computer holds any more.
type Replaced struct {
	Gate, User string
	// NotAfter is when it expires (expired, if Expired).
	NotAfter time.Time
	// Expired: it had expired already; there was nothing to end.
	Expired bool
	// Revoked: its gate invalidated every certificate of User there.
	Revoked bool
	// Err is why it was not revoked: its gate could not be reached or
	// told, or the credential could not be read (it stays valid there
	// until NotAfter); a *GateError with wire.CodeAuth is the gate
	// having stopped accepting it already (revoked, or the user disabled).
	Err error
}

// replaceTimeout bounds the revocation at the old gate: often one on
// another site's network, out of reach from here.
const replaceTimeout = 10 * time.Second

// previous is the credential a login is about to replace.
type previous struct {
	profile *Profile
	s       *Session // nil: err
	err     error
}

// readPrevious reads the credential in dir before a login replaces it,
// whatever its files' modes (it is only ever revoked). A directory
// without a profile, or with one too damaged to name its gate, has
// nothing to end (nil).
func readPrevious(dir string) *previous {
	p, err := loadProfile(dir, false)
	if err != nil {
		return nil
	}
	s, err := open(dir, false)
	return &previous{profile: p, s: s, err: err}
}

// user is the user the previous credential is for (certUser).
func (p *previous) user() string {
	if p.s != nil {
		return certUser(p.s.cert, p.profile)
	}
	return p.profile.User
}

// end revokes the previous credential at its gate when the new login (res)
// is for another gate (another key: an address is only a name) or
// another user. A renewal, the same user at the same gate, ends nothing:
// a logout would invalidate the new certificate too.
func (p *previous) end(ctx context.Context, res *LoginResult) *Replaced {
	if p == nil || p.profile.Pin == res.Fingerprint && p.user() == res.User {
		return nil
	}
	r := &Replaced{Gate: p.profile.Gate, User: p.user(), NotAfter: p.profile.Expiry}
	if p.s == nil {
		r.Err = fmt.Errorf("its credential could not be read to end it: %w", p.err)
		return r
	}
	r.NotAfter = p.s.NotAfter()
	if !time.Now().Before(r.NotAfter) {
		r.Expired = true
		return r
	}
	ctx, cancel := context.WithTimeout(ctx, replaceTimeout)
	defer cancel()
	r.Err = p.s.revoke(ctx)
	r.Revoked = r.Err == nil
	if errors.Is(r.Err, context.DeadlineExceeded) {
		r.Err = fmt.Errorf("no answer from %s within %v: %w", r.Gate, replaceTimeout, r.Err)
	}
	return r
}
