package audit

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
)

// checkpointDomain separates checkpoint signatures from any other use of
// the device key.
const checkpointDomain = "otgate-audit-checkpoint-v1"

// CheckpointDigest is what a checkpoint signs: SHA-256 of the deterministic
// CBOR array [domain, log id, first, last, head].
func CheckpointDigest(logID string, first, last uint64, head []byte) []byte {
	enc, err := encMode.Marshal([]any{checkpointDomain, logID, first, last, head})
	if err != nil {
		panic(fmt.Sprintf("audit: encode checkpoint message: %v", err)) // plain values never fail
	}
	d := sha256.Sum256(enc)
	return d[:]
}

// KeyID names a public key: the first 16 bytes, in hex, of the SHA-256 of
// its PKIX (SubjectPublicKeyInfo) DER encoding.
func KeyID(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("key id: %w", err)
	}
	d := sha256.Sum256(der)
	return hex.EncodeToString(d[:16]), nil
}

func signCheckpoint(s crypto.Signer, keyID, logID string, first, last uint64, head Hash) (Checkpoint, error) {
	digest := CheckpointDigest(logID, first, last, head[:])
	var opts crypto.SignerOpts = crypto.SHA256
	if _, ok := s.Public().(ed25519.PublicKey); ok {
		opts = crypto.Hash(0) // Ed25519 signs the digest as its message
	}
	sig, err := s.Sign(rand.Reader, digest, opts)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("sign checkpoint %d..%d: %w", first, last, err)
	}
	cp := Checkpoint{First: first, Last: last, Head: append([]byte(nil), head[:]...), KeyID: keyID, Signature: sig}
	if err := verifyDigest(s.Public(), digest, sig); err != nil {
		return Checkpoint{}, fmt.Errorf("sign checkpoint %d..%d: the signer's signature does not verify: %w", first, last, err)
	}
	return cp, nil
}

func verifyDigest(pub crypto.PublicKey, digest, sig []byte) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if !ecdsa.VerifyASN1(k, digest, sig) {
			return ErrSignature
		}
	case *rsa.PublicKey:
		if err := rsa.VerifyPKCS1v15(k, crypto.SHA256, digest, sig); err != nil {
			if err2 := rsa.VerifyPSS(k, crypto.SHA256, digest, sig, nil); err2 != nil {
				return fmt.Errorf("%w: %w", ErrSignature, err)
			}
		}
	case ed25519.PublicKey:
		if !ed25519.Verify(k, digest, sig) {
			return ErrSignature
		}
	default:
		return fmt.Errorf("%w: unsupported public key type %T", ErrSignature, pub)
	}
	return nil
}
