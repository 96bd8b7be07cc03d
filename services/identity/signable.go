package identity

import (
	"bytes"
	"crypto"
	"fmt"

	"github.com/otgate/otgate/audit"
)

// The device key signs for two purposes only: the gate's TLS 1.3
// handshakes (the proxy's listener) and the audit log's checkpoints. A
// caller hands the whole message (api.OpSignMessage) and the service
// checks that it is one of those before it hashes and signs it. A
// compromised caller can therefore not have the device key sign a
// certificate (which the CA device certificate of an identity made
// before end-entity ones would vouch for), or anything else that would be
// taken for the gate's word outside those two uses.

// tls13ServerContext opens the content a TLS 1.3 server signs in its
// CertificateVerify (RFC 8446, 4.4.3): 64 spaces, the context string and
// a zero byte; the transcript hash (of the cipher suite's hash: SHA-256
// or SHA-384) follows.
var tls13ServerContext = append(bytes.Repeat([]byte{0x20}, 64), "TLS 1.3, server CertificateVerify\x00"...)

// signable says what msg is, or why the device key will not sign it.
func signable(msg []byte) (string, error) {
	if rest, ok := bytes.CutPrefix(msg, tls13ServerContext); ok {
		if n := len(rest); n != crypto.SHA256.Size() && n != crypto.SHA384.Size() {
			return "", fmt.Errorf("identity: sign: a TLS 1.3 server CertificateVerify with a %d-byte transcript hash (want 32 or 48)", n)
		}
		return "tls13-server-certificate-verify", nil
	}
	if len(msg) > 0 && msg[0]&0xe0 == 0x80 { // a CBOR array: a checkpoint or nothing
		if err := audit.CheckCheckpointMessage(msg); err != nil {
			return "", fmt.Errorf("identity: sign: %w", err)
		}
		return "audit-checkpoint", nil
	}
	return "", fmt.Errorf("identity: sign: a %d-byte message that is neither a TLS 1.3 server CertificateVerify nor an audit checkpoint: the device key signs nothing else", len(msg))
}

// checkSignRequest says why the device key will not sign msg hashed with
// h, or nil.
func checkSignRequest(msg []byte, h crypto.Hash) error {
	if _, err := signable(msg); err != nil {
		return err
	}
	if h != crypto.SHA256 && h != crypto.SHA384 && h != crypto.SHA512 {
		return fmt.Errorf("identity: sign: unsupported hash %v (want SHA-256, SHA-384 or SHA-512)", h)
	}
	return nil
}

// SignMessage signs msg, hashed with h, with the device key (ECDSA, ASN.1
// DER) when it is a message the device key signs (see signable). It is
// refused in quarantine, as SignDigest.
func (id *Identity) SignMessage(msg []byte, h crypto.Hash) ([]byte, error) {
	if err := checkSignRequest(msg, h); err != nil {
		return nil, err
	}
	hh := h.New()
	hh.Write(msg)
	return id.SignDigest(hh.Sum(nil), h)
}
