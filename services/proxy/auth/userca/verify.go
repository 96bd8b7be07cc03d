package userca

import (
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"
)

// Identity is the verified user behind a client certificate.
type Identity struct {
	User       string
	Roles      []string // from the certificate (as at login)
	Generation uint64
	Serial     *big.Int
	NotAfter   time.Time
	Cert       *x509.Certificate
}

// Verify checks a client certificate chain (leaf first, as TLS delivers
// it): issued by this CA, within its validity, for a user URI of this
// site, and still good according to the CredentialChecker (generation,
// disabled, revoked serial). Other certificates in the chain are ignored:
// the CA certificate is the only trust anchor.
func (ca *CA) Verify(rawCerts [][]byte) (*Identity, error) {
	if len(rawCerts) == 0 {
		return nil, fmt.Errorf("userca: %w", ErrNoCertificate)
	}
	leaf, err := x509.ParseCertificate(rawCerts[0])
	if err != nil {
		return nil, fmt.Errorf("userca: %w: %w", ErrMalformed, err)
	}
	now := ca.cfg.Now()
	_, err = leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err != nil {
		// x509 reports a certificate outside its validity, not yet valid
		// included, as Expired.
		var inv x509.CertificateInvalidError
		if errors.As(err, &inv) && inv.Reason == x509.Expired {
			return nil, fmt.Errorf("userca: certificate of %q (serial %x): %w: %w", leaf.Subject.CommonName, leaf.SerialNumber, ErrExpired, err)
		}
		return nil, fmt.Errorf("userca: certificate of %q (serial %x): %w: %w", leaf.Subject.CommonName, leaf.SerialNumber, ErrNotOurs, err)
	}
	id, err := ca.identity(leaf)
	if err != nil {
		return nil, err
	}
	if err := ca.cfg.Checker.CheckCredential(id.User, id.Generation, id.Serial); err != nil {
		return nil, fmt.Errorf("userca: %w: %w", ErrRevoked, err)
	}
	return id, nil
}

// identity reads the user from a certificate that verified.
func (ca *CA) identity(c *x509.Certificate) (*Identity, error) {
	bad := func(problem string) error {
		return fmt.Errorf("userca: certificate serial %x: %w: %s", c.SerialNumber, ErrMalformed, problem)
	}
	if len(c.URIs) != 1 {
		return nil, bad(fmt.Sprintf("%d URIs, want one spiffe://%s/user/<name>", len(c.URIs), ca.cfg.Site))
	}
	u := c.URIs[0]
	name, ok := strings.CutPrefix(u.Path, "/user/")
	if u.Scheme != "spiffe" || u.Host != ca.cfg.Site || !ok || !nameRE.MatchString(name) || u.RawQuery != "" || u.Fragment != "" {
		return nil, bad(fmt.Sprintf("URI %s is not spiffe://%s/user/<name>", u, ca.cfg.Site))
	}
	var ext *credentialExt
	for _, e := range c.Extensions {
		if e.Id.Equal(CredentialOID) {
			if ext != nil {
				return nil, bad("two credential extensions")
			}
			ext = &credentialExt{}
			rest, err := asn1.Unmarshal(e.Value, ext)
			if err != nil || len(rest) != 0 || ext.Generation <= 0 {
				return nil, bad("credential extension does not decode")
			}
		}
	}
	if ext == nil {
		return nil, bad("no credential extension")
	}
	return &Identity{User: name, Roles: ext.Roles, Generation: uint64(ext.Generation), Serial: c.SerialNumber, NotAfter: c.NotAfter, Cert: c}, nil
}

// VerifyPeerCertificate is for tls.Config.VerifyPeerCertificate with
// ClientAuth tls.RequireAnyClientCert; after the handshake the proxy calls
// Verify on ConnectionState().PeerCertificates again (or IdentityOf) to
// learn who it is.
func (ca *CA) VerifyPeerCertificate(rawCerts [][]byte, _ [][]*x509.Certificate) error {
	_, err := ca.Verify(rawCerts)
	return err
}

// IdentityOf verifies the peer certificates of an established connection
// (tls.ConnectionState.PeerCertificates), e.g. to re-check a live session.
func (ca *CA) IdentityOf(peer []*x509.Certificate) (*Identity, error) {
	raw := make([][]byte, len(peer))
	for i, c := range peer {
		raw[i] = c.Raw
	}
	return ca.Verify(raw)
}
