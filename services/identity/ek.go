package identity

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// TCG NV indices of the EK certificates (EK Credential Profile).
const (
	EKCertIndexRSA = 0x01c00002 // RSA 2048 EK certificate
	EKCertIndexECC = 0x01c0000a // ECC NIST P-256 EK certificate (low range)
	// EKCertIndexECCP384 is the ECC NIST P-384 EK certificate of the high
	// range (TCG H-3 template), where swtpm_setup puts its ECC EK.
	EKCertIndexECCP384 = 0x01c00016
)

// ekInventory is what the service records about the endorsement key.
type ekInventory struct {
	PublicDER []byte // PKIX DER of the RSA EK (TCG default template)
	CertRSA   []byte // DER from EKCertIndexRSA, nil when absent
	CertECC   []byte // DER from EKCertIndexECC or else EKCertIndexECCP384, nil when absent
}

// serial derives the device serial from the EK: the first 8 bytes of the
// SHA-256 of its public key, in hex. It is stable for the TPM.
func (e *ekInventory) serial() string {
	sum := sha256.Sum256(e.PublicDER)
	return hex.EncodeToString(sum[:8])
}

// readEK re-creates the RSA EK from the TCG template to learn its public
// key and reads the EK certificates from NV when present.
func readEK(t transport.TPM) (*ekInventory, error) {
	rsp, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.TPMRHEndorsement,
		InPublic:      tpm2.New2B(tpm2.RSAEKTemplate),
	}.Execute(t)
	if err != nil {
		return nil, fmt.Errorf("identity: create EK (RSA, endorsement hierarchy): %w", err)
	}
	flush(t, rsp.ObjectHandle)
	pubArea, err := rsp.OutPublic.Contents()
	if err != nil {
		return nil, fmt.Errorf("identity: EK public: %w", err)
	}
	pub, err := tpm2.Pub(*pubArea)
	if err != nil {
		return nil, fmt.Errorf("identity: EK public: %w", err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("identity: EK public: %w", err)
	}
	inv := &ekInventory{PublicDER: der}
	if inv.CertRSA, err = readNVCert(t, EKCertIndexRSA); err != nil {
		return nil, err
	}
	for _, idx := range []tpm2.TPMHandle{EKCertIndexECC, EKCertIndexECCP384} {
		if inv.CertECC, err = readNVCert(t, idx); err != nil {
			return nil, err
		}
		if inv.CertECC != nil {
			break
		}
	}
	return inv, nil
}

// readNVCert reads an EK certificate from NV, or nil when the index is not
// defined. The certificate is checked to parse as X.509.
func readNVCert(t transport.TPM, index tpm2.TPMHandle) ([]byte, error) {
	out, defined, err := readNV(t, index)
	if !defined || err != nil {
		return nil, err
	}
	// Some manufacturers pad the index: keep the DER element only.
	cert, err := x509.ParseCertificate(trimDER(out))
	if err != nil {
		return nil, fmt.Errorf("identity: NV index %#x does not hold an X.509 certificate: %w", uint32(index), err)
	}
	return cert.Raw, nil
}

// trimDER cuts b to the length its outer DER SEQUENCE header declares.
func trimDER(b []byte) []byte {
	if len(b) < 4 || b[0] != 0x30 {
		return b
	}
	switch {
	case b[1] < 0x80:
		if n := 2 + int(b[1]); n <= len(b) {
			return b[:n]
		}
	case b[1] == 0x81:
		if n := 3 + int(b[2]); n <= len(b) {
			return b[:n]
		}
	case b[1] == 0x82:
		if n := 4 + (int(b[2])<<8 | int(b[3])); n <= len(b) {
			return b[:n]
		}
	}
	return b
}
