package identity

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"regexp"
	"time"
)

// Dev-mode markers carried by every certificate and CSR made in dev mode.
const (
	DevModeOU  = "DEV-MODE-SOFTWARE-KEY"
	DevModeURI = "urn:otgate:dev-mode-software-key"
)

// Validity of what the service issues.
const (
	deviceCertValidity = 20 * 365 * 24 * time.Hour
	workloadCAValidity = 5 * 365 * 24 * time.Hour
	MaxWorkloadCertTTL = time.Hour
	// certBackdate starts the long-lived certificates (device, workload
	// CA) a day early: they are made on a first boot, possibly before the
	// time service's first sync, and a hardware clock kept in local time
	// (as Windows keeps it) can be up to 14 hours ahead of UTC; the step
	// back must not leave them "not yet valid".
	certBackdate           = 24 * time.Hour
	workloadBackdate       = time.Minute
	workloadCAKeySecret    = "workload-ca-key"
	identitySecretOwner    = "identity"
	serviceNameDescription = "lower-case letters, digits, '.', '_' or '-', at most 64"
)

// ErrCertKeyMismatch: a certificate offered for installation is not for
// the device key.
var ErrCertKeyMismatch = errors.New("certificate public key does not match the device key")

// siteRE and the length limit (a DNS name, at most 253 characters) check
// a SPIFFE trust domain. A counted repetition ({0,251}) would compile to
// 250-odd states at package init, in every process of the multi-call
// binary.
var siteRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$`)

const maxSiteLen = 253

// checkSite validates the SPIFFE trust domain.
func checkSite(site string) error {
	if !(len(site) <= maxSiteLen && siteRE.MatchString(site)) {
		return fmt.Errorf("identity: bad site %q: want a SPIFFE trust domain (lower-case letters, digits, '.', '-')", site)
	}
	return nil
}

// DeviceURI is the device's SPIFFE-style ID.
func DeviceURI(site, serial string) *url.URL {
	return &url.URL{Scheme: "spiffe", Host: site, Path: "/gate/" + serial}
}

// WorkloadURI is the SPIFFE-style ID of one of the gate's services.
func WorkloadURI(site, serial, service string) *url.URL {
	return &url.URL{Scheme: "spiffe", Host: site, Path: "/gate/" + serial + "/service/" + service}
}

func devURIs(dev bool) []*url.URL {
	if !dev {
		return nil
	}
	u, _ := url.Parse(DevModeURI)
	return []*url.URL{u}
}

func subject(cn string, dev bool) pkix.Name {
	n := pkix.Name{CommonName: cn, Organization: []string{"otgate"}}
	if dev {
		n.OrganizationalUnit = []string{DevModeOU}
	}
	return n
}

func randomSerial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

// selfSignedDeviceCert makes the default device certificate: an end
// entity (CA:FALSE, digitalSignature only, serverAuth and clientAuth). The
// device key signs any digest an allowed caller sends through the socket's
// sign operation (crypto/tls gives a Signer only the digest), so it must
// not be a key that relying parties accept as an issuer: a certificate it
// signed does not verify under this one. Identities made before it was an
// end entity keep their CA certificate (see CertifyingDeviceCertificate).
func selfSignedDeviceCert(signer crypto.Signer, site, serial string, dev bool, now time.Time) ([]byte, error) {
	sn, err := randomSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               subject("otgate gate "+serial, dev),
		NotBefore:             now.Add(-certBackdate),
		NotAfter:              now.Add(deviceCertValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  false,
		URIs:                  append([]*url.URL{DeviceURI(site, serial)}, devURIs(dev)...),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, signer.Public(), signer)
	if err != nil {
		return nil, fmt.Errorf("identity: self-sign device certificate: %w", err)
	}
	return der, nil
}

// certifies says why cert can act as an issuer ("" when it cannot): a CA,
// or a key usage that allows certificate signing.
func certifies(cert *x509.Certificate) string {
	switch {
	case cert.IsCA:
		return "is a CA (basic constraints CA:TRUE)"
	case cert.KeyUsage&x509.KeyUsageCertSign != 0:
		return "allows certificate signing (key usage keyCertSign)"
	}
	return ""
}

// deviceCSR makes a PKCS#10 request signed by the device key.
func deviceCSR(signer crypto.Signer, site, serial string, dev bool) ([]byte, error) {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: subject("otgate gate "+serial, dev),
		URIs:    append([]*url.URL{DeviceURI(site, serial)}, devURIs(dev)...),
	}, signer)
	if err != nil {
		return nil, fmt.Errorf("identity: make CSR: %w", err)
	}
	return der, nil
}

// parseCertChain reads PEM (one or more CERTIFICATE blocks) or one DER
// certificate; the first is the leaf.
func parseCertChain(b []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	rest := b
	for {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block %d is %q, want CERTIFICATE", len(certs)+1, blk.Type)
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("PEM block %d: %w", len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) > 0 {
		return certs, nil
	}
	c, err := x509.ParseCertificate(b)
	if err != nil {
		return nil, fmt.Errorf("neither PEM certificates nor one DER certificate: %w", err)
	}
	return []*x509.Certificate{c}, nil
}

// ErrCertChain: a certificate chain offered for installation is refused
// (the error names the certificate and why).
var ErrCertChain = errors.New("certificate chain refused")

// installClockSkew is how far in the future a leaf may start and still be
// installed: the issuing CA's clock may run a little ahead of the gate's.
const installClockSkew = 5 * time.Minute

// certName names certificate i (0: the leaf) of a chain in errors.
func certName(i int, c *x509.Certificate) string {
	role := "intermediate"
	if i == 0 {
		role = "leaf"
	}
	return fmt.Sprintf("certificate %d (%s, subject %q)", i+1, role, c.Subject.String())
}

// checkDeviceChain checks a device certificate chain (leaf first) at now:
// the leaf must be valid now (a start up to installClockSkew ahead is
// allowed), usable as a TLS server certificate (the proxy serves it) and
// not a CA (the device key signs digests for callers, so it must not
// certify); each certificate must be signed by the next, which must be a
// CA allowed to sign certificates. The chain need not end at a root.
func checkDeviceChain(certs []*x509.Certificate, now time.Time) error {
	refuse := func(i int, format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrCertChain, certName(i, certs[i]), fmt.Sprintf(format, args...))
	}
	leaf := certs[0]
	switch {
	case now.After(leaf.NotAfter):
		return refuse(0, "expired on %s", leaf.NotAfter.UTC().Format(time.RFC3339))
	case leaf.NotBefore.After(now.Add(installClockSkew)):
		return refuse(0, "not valid before %s (now %s; more than %s ahead)",
			leaf.NotBefore.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), installClockSkew)
	case leaf.KeyUsage != 0 && leaf.KeyUsage&x509.KeyUsageDigitalSignature == 0:
		return refuse(0, "its key usage lacks digitalSignature, which a TLS server's ECDSA key needs (the proxy serves this certificate)")
	case !serverAuthAllowed(leaf):
		return refuse(0, "its extended key usage does not allow TLS server authentication (serverAuth), and the proxy serves this certificate")
	}
	if why := certifies(leaf); why != "" {
		return refuse(0, "%s: the device key signs digests for the gate's services, so its certificate must be an end entity", why)
	}
	for i := 1; i < len(certs); i++ {
		c := certs[i]
		switch {
		case !c.BasicConstraintsValid || !c.IsCA:
			return refuse(i, "is not a CA (basic constraints CA:TRUE missing), so it cannot issue certificate %d", i)
		case c.KeyUsage != 0 && c.KeyUsage&x509.KeyUsageCertSign == 0:
			return refuse(i, "its key usage lacks keyCertSign, so it cannot issue certificate %d", i)
		case now.After(c.NotAfter):
			return refuse(i, "expired on %s", c.NotAfter.UTC().Format(time.RFC3339))
		}
	}
	for i := 0; i+1 < len(certs); i++ {
		child, parent := certs[i], certs[i+1]
		if !bytes.Equal(child.RawIssuer, parent.RawSubject) {
			return refuse(i, "its issuer %q is not the subject of certificate %d (%q): the chain is out of order or incomplete",
				child.Issuer.String(), i+2, parent.Subject.String())
		}
		if err := child.CheckSignatureFrom(parent); err != nil {
			return refuse(i, "not signed by certificate %d (subject %q): %v", i+2, parent.Subject.String(), err)
		}
	}
	return nil
}

// serverAuthAllowed: no extended key usage (any use), or one that names
// serverAuth or anyExtendedKeyUsage.
func serverAuthAllowed(c *x509.Certificate) bool {
	if len(c.ExtKeyUsage) == 0 && len(c.UnknownExtKeyUsage) == 0 {
		return true
	}
	for _, u := range c.ExtKeyUsage {
		if u == x509.ExtKeyUsageServerAuth || u == x509.ExtKeyUsageAny {
			return true
		}
	}
	return false
}

// matchesKey checks that cert certifies pub.
func matchesKey(cert *x509.Certificate, pub crypto.PublicKey) error {
	want, ok := pub.(*ecdsa.PublicKey)
	if !ok {
		return fmt.Errorf("device key is %T", pub)
	}
	got, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok || !got.Equal(want) {
		return fmt.Errorf("%w (certificate subject %q, serial %x)", ErrCertKeyMismatch, cert.Subject.String(), cert.SerialNumber)
	}
	return nil
}

// newWorkloadCA makes the workload CA key and its certificate, a
// self-signed root. It is not signed by the device key: that key signs
// whatever the sign operation is given, so nothing may rest on it as an
// issuer. The workload CA's key is a sealed secret of the identity
// service itself, which no caller can name (checkCallerName), so only
// this process certifies with it.
func newWorkloadCA(site, serial string, dev bool, now time.Time) (*ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(deviceCurve(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	sn, err := randomSerial()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               subject("otgate workload CA "+serial, dev),
		NotBefore:             now.Add(-certBackdate),
		NotAfter:              now.Add(workloadCAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
		URIs:                  append([]*url.URL{{Scheme: "spiffe", Host: site, Path: "/gate/" + serial + "/workload-ca"}}, devURIs(dev)...),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("identity: self-sign workload CA certificate: %w", err)
	}
	return key, der, nil
}

// issueWorkloadCert certifies the key of csrDER for service, valid for ttl
// (at most MaxWorkloadCertTTL).
func issueWorkloadCert(caKey *ecdsa.PrivateKey, caCert *x509.Certificate, csrDER []byte, site, serial, service string, ttl time.Duration, dev bool, now time.Time) ([]byte, error) {
	if ttl <= 0 || ttl > MaxWorkloadCertTTL {
		return nil, fmt.Errorf("identity: workload certificate lifetime %v out of range (0, %v]", ttl, MaxWorkloadCertTTL)
	}
	if !secretNameRE.MatchString(service) {
		return nil, fmt.Errorf("identity: bad service name %q (%s)", service, serviceNameDescription)
	}
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, fmt.Errorf("identity: workload CSR: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("identity: workload CSR signature: %w", err)
	}
	sn, err := randomSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		Subject:      subject(service, dev),
		// The whole validity window, backdating included, is at most ttl.
		NotBefore:   now.Add(-workloadBackdate),
		NotAfter:    now.Add(-workloadBackdate + ttl),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:        append([]*url.URL{WorkloadURI(site, serial, service)}, devURIs(dev)...),
		DNSNames:    []string{service + ".otgate.internal"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, csr.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("identity: issue workload certificate for %q: %w", service, err)
	}
	return der, nil
}
