package userca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"math/big"
	"net/url"
	"time"

	"github.com/otgate/otgate/internal/namepattern"
)

// CredentialOID identifies the extension carrying the credential
// generation and roles: DER SEQUENCE { generation INTEGER, roles SEQUENCE
// OF UTF8String }. Non-critical; only the gate reads it. The arc is
// otgate's private one under the IANA enterprise numbers (to be replaced
// by a registered Private Enterprise Number before 1.0).
var CredentialOID = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 59590, 1, 1}

type credentialExt struct {
	Generation int64
	Roles      []string
}

var nameRE = namepattern.New("[a-z]", "[a-z0-9._-]", 64)

// Request asks for a user certificate after a successful login.
type Request struct {
	User       string
	Roles      []string
	Generation uint64 // auth.Login.Generation
	PublicKey  crypto.PublicKey
	// WindowEnd is when the user's current time window ends (zero: no
	// window limit); the certificate never outlives it.
	WindowEnd time.Time
}

// Issued is a user certificate.
type Issued struct {
	DER      []byte
	Cert     *x509.Certificate
	Serial   *big.Int
	NotAfter time.Time
}

// UserURI is the certificate URI of a user.
func UserURI(site, user string) *url.URL {
	return &url.URL{Scheme: "spiffe", Host: site, Path: "/user/" + user}
}

func checkPublicKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return fmt.Errorf("userca: ECDSA key on %s: want P-256 or P-384", k.Curve.Params().Name)
		}
	case ed25519.PublicKey:
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return fmt.Errorf("userca: RSA key of %d bits: want at least 2048", k.N.BitLen())
		}
	default:
		return fmt.Errorf("userca: public key type %T: want ECDSA, Ed25519 or RSA", pub)
	}
	return nil
}

// Issue signs a client certificate for r: valid from now (backdated a
// minute) until the earliest of now + MaxValidity, r.WindowEnd and the CA's
// own expiry.
func (ca *CA) Issue(r Request) (*Issued, error) {
	if !nameRE.MatchString(r.User) {
		return nil, fmt.Errorf("userca: issue: bad user name %q", r.User)
	}
	for _, role := range r.Roles {
		if !nameRE.MatchString(role) {
			return nil, fmt.Errorf("userca: issue for %q: bad role name %q", r.User, role)
		}
	}
	if r.Generation == 0 || r.Generation > 1<<62 {
		return nil, fmt.Errorf("userca: issue for %q: generation %d out of range", r.User, r.Generation)
	}
	if err := checkPublicKey(r.PublicKey); err != nil {
		return nil, fmt.Errorf("userca: issue for %q: %w", r.User, err)
	}
	if err := ca.renewIfDue(); err != nil {
		return nil, fmt.Errorf("userca: issue for %q: %w", r.User, err)
	}
	ca.mu.RLock()
	caKey, caCert := ca.key, ca.cert
	ca.mu.RUnlock()
	now := ca.cfg.Now()
	notAfter := now.Add(ca.cfg.MaxValidity)
	if !r.WindowEnd.IsZero() && r.WindowEnd.Before(notAfter) {
		notAfter = r.WindowEnd
	}
	if caCert.NotAfter.Before(notAfter) {
		notAfter = caCert.NotAfter
	}
	if !notAfter.After(now) {
		return nil, fmt.Errorf("userca: issue for %q: %w: the time window ended at %v", r.User, ErrNoValidity, notAfter.UTC().Format(time.RFC3339))
	}
	ext, err := asn1.Marshal(credentialExt{Generation: int64(r.Generation), Roles: append([]string{}, r.Roles...)})
	if err != nil {
		return nil, fmt.Errorf("userca: issue for %q: encode extension: %w", r.User, err)
	}
	sn, err := randomSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:    sn,
		Subject:         pkix.Name{CommonName: r.User, Organization: []string{"otgate"}},
		NotBefore:       now.Add(-backdate),
		NotAfter:        notAfter,
		KeyUsage:        x509.KeyUsageDigitalSignature,
		ExtKeyUsage:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		URIs:            []*url.URL{UserURI(ca.cfg.Site, r.User)},
		ExtraExtensions: []pkix.Extension{{Id: CredentialOID, Value: ext}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, r.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("userca: issue for %q: %w", r.User, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &Issued{DER: der, Cert: cert, Serial: sn, NotAfter: cert.NotAfter}, nil
}
