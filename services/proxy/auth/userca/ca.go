// Package userca is the gate's user certificate authority: after a
// successful MFA login it issues a short-lived client certificate, and the
// proxy's TLS listener verifies every client certificate with it.
//
// The CA key is an ECDSA P-256 software key kept as the sealed secret
// "user-ca-key" of the identity service (so it is encrypted under the
// TPM-sealed data key and useless on any other gate). Its certificate is
// self-signed: the gate's device key certifies nothing (its certificate is
// an end entity, and the identity service's sign operation, which the
// proxy's TLS handshakes need, must not be able to mint CAs), so the user
// CA is a trust anchor of its own, which only this gate's proxy holds.
// A CA made by an earlier release (signed by the device key) still loads
// and is replaced by a self-signed one at its renewal. The key is not a
// TPM key itself because every login signs with it and the TPM is slow
// and shared.
//
// A user certificate names the user as spiffe://<site>/user/<name> and
// carries the user's credential generation and roles in an extension;
// Verify refuses it once the generation is no longer current, the user is
// disabled or removed, or its serial was revoked (asked of a
// CredentialChecker, the user store), and of course once it has expired.
package userca

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"regexp"
	"sync"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/otgate/otgate/services/identity/api"
)

// KeySecret is the sealed secret holding the CA key and certificate.
const KeySecret = "user-ca-key"

// Validity limits.
const (
	DefaultMaxValidity = 8 * time.Hour
	caValidity         = 10 * 365 * 24 * time.Hour
	backdate           = time.Minute // client clocks run a little late
	// caBackdate starts the CA certificate a day early: it is made on
	// the first boot, possibly before the time service's first sync, with
	// a hardware clock that may run up to 14 hours ahead (kept in local
	// time); the step back must not leave the CA "not yet valid".
	caBackdate = 24 * time.Hour
	// CARenewBefore: a CA with less validity left than this (or not
	// valid at all on the gate's clock) is replaced by a new one, at Open
	// and at the next Issue.
	CARenewBefore = 365 * 24 * time.Hour
)

// Sealer keeps named secrets sealed by the device identity (the identity
// api.Client); Unseal of an unknown name matches api.ErrNotFound.
type Sealer interface {
	Seal(name string, data []byte) error
	Unseal(name string) ([]byte, error)
}

// CredentialChecker says whether a certificate of user with this
// generation and serial is still good (auth.Store implements it).
type CredentialChecker interface {
	CheckCredential(user string, generation uint64, serial *big.Int) error
}

// Config configures the CA.
type Config struct {
	// Site is the SPIFFE trust domain (the identity's site).
	Site string
	// Sealer keeps the CA key.
	Sealer Sealer
	// Device is the device identity (api.Client.TLSCertificate()): a CA
	// made by an earlier release, signed by the device key, is checked
	// against its public key when it is loaded.
	Device *tls.Certificate
	// Checker is asked about every certificate Verify sees.
	Checker CredentialChecker
	// MaxValidity bounds every certificate (DefaultMaxValidity).
	MaxValidity time.Duration
	// Now is the clock; nil: time.Now.
	Now func() time.Time
	// Logf, when set, hears of a CA renewal.
	Logf func(format string, args ...any)
}

// Errors of Verify and Issue.
var (
	ErrNoCertificate = errors.New("no client certificate")
	ErrNotOurs       = errors.New("certificate not issued by this gate's user CA")
	ErrExpired       = errors.New("certificate expired or not yet valid")
	ErrMalformed     = errors.New("malformed user certificate")
	ErrRevoked       = errors.New("certificate revoked")
	ErrNoValidity    = errors.New("no validity left")
	ErrCAState       = errors.New("user CA state unusable")
)

// CA is the user certificate authority.
type CA struct {
	cfg    Config
	device *x509.Certificate

	mu   sync.RWMutex // key, cert, pool: replaced together by a renewal
	key  *ecdsa.PrivateKey
	cert *x509.Certificate
	pool *x509.CertPool
}

type caRecord struct {
	Version int    `cbor:"1,keyasint"`
	Key     []byte `cbor:"2,keyasint"` // PKCS#8
	Cert    []byte `cbor:"3,keyasint"` // DER
}

// siteRE and the length limit (a DNS name, at most 253 characters) check
// a SPIFFE trust domain. A counted repetition ({0,251}) would compile to
// 250-odd states at package init, in every process of the multi-call
// binary.
var siteRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$`)

const maxSiteLen = 253

// Open loads the CA from its sealed secret, or creates it (key, and a
// self-signed certificate) when the secret does not exist.
func Open(cfg Config) (*CA, error) {
	if !(len(cfg.Site) <= maxSiteLen && siteRE.MatchString(cfg.Site)) {
		return nil, fmt.Errorf("userca: bad site %q: want a SPIFFE trust domain (lower-case letters, digits, '.', '-')", cfg.Site)
	}
	if cfg.Sealer == nil || cfg.Checker == nil || cfg.Device == nil || len(cfg.Device.Certificate) == 0 || cfg.Device.PrivateKey == nil {
		return nil, errors.New("userca: Sealer, Checker and Device (certificate and signer) are required")
	}
	if cfg.MaxValidity == 0 {
		cfg.MaxValidity = DefaultMaxValidity
	}
	if cfg.MaxValidity < time.Minute || cfg.MaxValidity > 7*24*time.Hour {
		return nil, fmt.Errorf("userca: maximum validity %v: want 1 minute to 7 days", cfg.MaxValidity)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	device := cfg.Device.Leaf
	if device == nil {
		var err error
		if device, err = x509.ParseCertificate(cfg.Device.Certificate[0]); err != nil {
			return nil, fmt.Errorf("userca: device certificate: %w", err)
		}
	}
	ca := &CA{cfg: cfg, device: device}
	b, err := cfg.Sealer.Unseal(KeySecret)
	switch {
	case errors.Is(err, api.ErrNotFound):
		if ca.key, ca.cert, err = ca.create(); err != nil {
			return nil, err
		}
	case err != nil:
		return nil, fmt.Errorf("userca: unseal %q: %w", KeySecret, err)
	default:
		if err := ca.load(b, device); err != nil {
			return nil, err
		}
	}
	ca.pool = x509.NewCertPool()
	ca.pool.AddCert(ca.cert)
	if err := ca.renewIfDue(); err != nil {
		return nil, err
	}
	return ca, nil
}

// renewIfDue replaces the CA when the gate's clock says it is not valid
// (expired, or not yet valid after the clock was set back) or has less
// than CARenewBefore left: a new key and self-signed certificate, sealed
// in place of the old. Until the proxy restarts, the old
// CA stays a trust anchor while it is valid, so the certificates it issued
// (hours, at most days) keep working; after a restart their users log in
// again. A renewal that fails while the old CA is still valid is logged
// and tried again at the next Issue; one that fails when it is not is an
// error (nothing is issued that would not verify).
func (ca *CA) renewIfDue() error {
	now := ca.cfg.Now()
	ca.mu.RLock()
	old := ca.cert
	ca.mu.RUnlock()
	valid := !now.Before(old.NotBefore) && now.Before(old.NotAfter)
	if valid && old.NotAfter.Sub(now) >= CARenewBefore {
		return nil
	}
	ca.mu.Lock()
	defer ca.mu.Unlock()
	if ca.cert != old { // renewed meanwhile
		return nil
	}
	why := fmt.Sprintf("valid until %s, less than %s left", old.NotAfter.UTC().Format(time.RFC3339), CARenewBefore)
	if !valid {
		why = fmt.Sprintf("not valid on this clock (%s): valid %s to %s", now.UTC().Format(time.RFC3339),
			old.NotBefore.UTC().Format(time.RFC3339), old.NotAfter.UTC().Format(time.RFC3339))
	}
	key, cert, err := ca.create()
	if err != nil {
		if valid {
			ca.logf("userca: the user CA is due for renewal (%s) but the renewal failed, keeping it: %v", why, err)
			return nil
		}
		return fmt.Errorf("userca: the user CA is %s and a new one could not be made: %w", why, err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	if valid {
		pool.AddCert(old)
	}
	ca.key, ca.cert, ca.pool = key, cert, pool
	ca.logf("userca: renewed the user CA (serial %x, valid until %s): the old one (serial %x) was %s; certificates it issued stay good until this process restarts",
		cert.SerialNumber, cert.NotAfter.UTC().Format(time.RFC3339), old.SerialNumber, why)
	return nil
}

func (ca *CA) logf(format string, args ...any) {
	if ca.cfg.Logf != nil {
		ca.cfg.Logf(format, args...)
	}
}

func (ca *CA) subject() pkix.Name {
	return pkix.Name{CommonName: "otgate user CA " + ca.cfg.Site, Organization: []string{"otgate"}}
}

// create makes a CA key and self-signed certificate and seals them as
// KeySecret, replacing what was sealed there.
func (ca *CA) create() (*ecdsa.PrivateKey, *x509.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("userca: generate key: %w", err)
	}
	sn, err := randomSerial()
	if err != nil {
		return nil, nil, err
	}
	now := ca.cfg.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               ca.subject(),
		NotBefore:             now.Add(-caBackdate),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
		URIs:                  []*url.URL{{Scheme: "spiffe", Host: ca.cfg.Site, Path: "/user-ca"}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, fmt.Errorf("userca: self-sign the CA certificate: %w", err)
	}
	pk, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	rec, err := encMode.Marshal(caRecord{Version: 1, Key: pk, Cert: der})
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	if err := ca.cfg.Sealer.Seal(KeySecret, rec); err != nil {
		return nil, nil, fmt.Errorf("userca: seal the CA key as %q: %w", KeySecret, err)
	}
	return key, cert, nil
}

func (ca *CA) load(b []byte, device *x509.Certificate) error {
	bad := func(problem string, err error) error {
		if err != nil {
			return fmt.Errorf("userca: sealed secret %q: %w: %s: %w", KeySecret, ErrCAState, problem, err)
		}
		return fmt.Errorf("userca: sealed secret %q: %w: %s", KeySecret, ErrCAState, problem)
	}
	var rec caRecord
	if err := decMode.Unmarshal(b, &rec); err != nil {
		return bad("not a CA record", err)
	}
	if rec.Version != 1 {
		return bad(fmt.Sprintf("version %d, this build reads 1", rec.Version), nil)
	}
	k, err := x509.ParsePKCS8PrivateKey(rec.Key)
	if err != nil {
		return bad("key", err)
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return bad(fmt.Sprintf("key is %T, want ECDSA", k), nil)
	}
	cert, err := x509.ParseCertificate(rec.Cert)
	if err != nil {
		return bad("certificate", err)
	}
	if pub, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok || !pub.Equal(key.Public()) {
		return bad("certificate is not for the key", nil)
	}
	if !cert.IsCA {
		return bad("certificate is not a CA", nil)
	}
	// Self-signed, or (made by an earlier release) signed by this gate's
	// device key.
	if err := cert.CheckSignature(cert.SignatureAlgorithm, cert.RawTBSCertificate, cert.Signature); err != nil {
		if derr := device.CheckSignature(cert.SignatureAlgorithm, cert.RawTBSCertificate, cert.Signature); derr != nil {
			return bad("certificate is neither self-signed nor signed by this gate's device key", errors.Join(err, derr))
		}
	}
	ca.key, ca.cert = key, cert
	return nil
}

func randomSerial() (*big.Int, error) {
	// 128 random bits, kept positive and non-zero.
	for {
		n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
		if err != nil {
			return nil, fmt.Errorf("userca: serial: %w", err)
		}
		if n.Sign() > 0 {
			return n, nil
		}
	}
}

// Certificate is the CA certificate (the trust anchor for user
// certificates).
func (ca *CA) Certificate() *x509.Certificate {
	ca.mu.RLock()
	defer ca.mu.RUnlock()
	return ca.cert
}

// Chain is the CA certificate, DER, the chain a user certificate is sent
// with; a CA made by an earlier release (signed by the device key) is
// followed by the device chain, as it was then.
func (ca *CA) Chain() [][]byte {
	c := ca.Certificate()
	if bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature) == nil {
		return [][]byte{c.Raw}
	}
	return append([][]byte{c.Raw}, ca.cfg.Device.Certificate...)
}

// Pool holds the CA certificate(s) that verify user certificates (also
// tls.Config.ClientCAs, as a hint to clients; a renewal makes a new pool,
// so a tls.Config holding an earlier one hints at the old CA only).
func (ca *CA) Pool() *x509.CertPool {
	ca.mu.RLock()
	defer ca.mu.RUnlock()
	return ca.pool
}

var (
	encMode = func() cbor.EncMode {
		m, err := cbor.CoreDetEncOptions().EncMode()
		if err != nil {
			panic(err)
		}
		return m
	}()
	decMode = func() cbor.DecMode {
		m, err := cbor.DecOptions{ExtraReturnErrors: cbor.ExtraDecErrorUnknownField}.DecMode()
		if err != nil {
			panic(err)
		}
		return m
	}()
)
