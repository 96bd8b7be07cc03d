package proxy

import (
	"crypto"
	"time"

	"github.com/otgate/otgate/services/proxy/auth"
	"github.com/otgate/otgate/services/proxy/auth/userca"
)

// UserCA adapts *userca.CA to CertAuthority.
type UserCA struct{ CA *userca.CA }

// Issue certifies pub for login until notAfter at the latest; the chain is
// the leaf, the user CA certificate and the device chain.
func (u UserCA) Issue(login *auth.Login, pub crypto.PublicKey, notAfter time.Time) ([][]byte, error) {
	iss, err := u.CA.Issue(userca.Request{User: login.User, Roles: login.Roles, Generation: login.Generation, PublicKey: pub, WindowEnd: notAfter})
	if err != nil {
		return nil, err
	}
	return append([][]byte{iss.DER}, u.CA.Chain()...), nil
}

// Verify checks a presented chain.
func (u UserCA) Verify(chain [][]byte) (*Credential, error) {
	id, err := u.CA.Verify(chain)
	if err != nil {
		return nil, err
	}
	return &Credential{User: id.User, Roles: id.Roles, Generation: id.Generation, Serial: id.Serial, NotAfter: id.NotAfter}, nil
}
