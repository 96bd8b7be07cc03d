package auth

import (
	"bytes"
	"errors"
	"fmt"
	"math/big"
)

// ErrCredentialRevoked: a certificate is no longer valid for its user
// (generation bumped, user disabled or removed, serial revoked).
var ErrCredentialRevoked = errors.New("credential revoked")

// CheckCredential is asked for every new connection (and periodically
// for live sessions): is a certificate of user, with this generation and
// serial, still good? Expiry and the chain are the CA's business.
func (s *Store) CheckCredential(user string, generation uint64, serial *big.Int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed
	}
	u := s.data.Users[user]
	switch {
	case u == nil:
		return fmt.Errorf("auth: certificate of %q: %w: %w", user, ErrCredentialRevoked, ErrUnknownUser)
	case u.Disabled:
		return fmt.Errorf("auth: certificate of %q: %w: user disabled", user, ErrCredentialRevoked)
	case generation != u.Generation:
		return fmt.Errorf("auth: certificate of %q: %w: credential generation %d, current %d (logged out or revoked)", user, ErrCredentialRevoked, generation, u.Generation)
	}
	if serial != nil {
		sb := serial.Bytes()
		for _, r := range s.data.Revoked {
			if r.User == user && bytes.Equal(r.Serial, sb) {
				return fmt.Errorf("auth: certificate of %q: %w: serial %x revoked", user, ErrCredentialRevoked, serial)
			}
		}
	}
	return nil
}
