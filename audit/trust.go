package audit

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
)

// Trust is what Verify checks a log against.
type Trust struct {
	// PublicKey verifies checkpoint signatures (required unless ChainOnly).
	PublicKey crypto.PublicKey
	// ChainOnly checks framing and the hash chain but no signatures.
	ChainOnly bool
	// LogID, when set, must be the log's id.
	LogID string
	// AllowPartial accepts a log whose oldest files were removed: the chain
	// is checked from the first file present.
	AllowPartial bool
	// RequireSealed makes any end of the newest file other than the seal
	// Close writes (Report.End == EndSealed) an error: a *Problem wrapping
	// ErrNotSealed that names the file and offset where the unsealed part
	// starts. Use it on the log of a stopped gate or on an archived copy;
	// a running gate's log is never sealed. Without it an unsealed or torn
	// end is reported in the Report only.
	RequireSealed bool
	// Anchor, when set, is the value of the device's anchor counter (read
	// on the gate: `otgate audit anchor`): a log whose last anchor is
	// behind it (rolled back, its newest part removed), or more than one
	// step ahead of it, is a *Problem wrapping ErrAnchor. See Anchor.
	Anchor *uint64
}

// ParseTrustPEM reads a PEM "PUBLIC KEY" or "CERTIFICATE" (the device
// identity certificate) and returns its public key. It does not check the
// certificate's validity or chain.
func ParseTrustPEM(data []byte, source string) (crypto.PublicKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%s: no PEM block found", source)
	}
	switch block.Type {
	case "PUBLIC KEY":
		k, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: parse public key: %w", source, err)
		}
		return k, nil
	case "CERTIFICATE":
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: parse certificate: %w", source, err)
		}
		return c.PublicKey, nil
	}
	return nil, fmt.Errorf("%s: PEM block %q, want PUBLIC KEY or CERTIFICATE", source, block.Type)
}

var errNoTrust = errors.New("no public key to check checkpoint signatures (give one, or ask for a chain-only check)")
