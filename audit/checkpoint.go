package audit

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
)

// checkpointDomain separates checkpoint signatures from any other use of
// the device key.
const checkpointDomain = "otgate-audit-checkpoint-v1"

// CheckpointMessage is what a checkpoint signs: the deterministic CBOR
// array [domain, log id, first, last, head].
func CheckpointMessage(logID string, first, last uint64, head []byte) []byte {
	enc, err := encMode.Marshal([]any{checkpointDomain, logID, first, last, head})
	if err != nil {
		panic(fmt.Sprintf("audit: encode checkpoint message: %v", err)) // plain values never fail
	}
	return enc
}

// CheckpointDigest is the SHA-256 of the CheckpointMessage: what an ECDSA or
// RSA signature of a checkpoint covers.
func CheckpointDigest(logID string, first, last uint64, head []byte) []byte {
	d := sha256.Sum256(CheckpointMessage(logID, first, last, head))
	return d[:]
}

// CheckCheckpointMessage tells whether msg is a checkpoint message exactly
// as CheckpointMessage writes it (domain, a log id, first <= last, a
// head of HashSize bytes, in deterministic CBOR), for a signer that signs
// checkpoints and nothing else (the identity service).
func CheckCheckpointMessage(msg []byte) error {
	var v struct {
		_      struct{} `cbor:",toarray"`
		Domain string
		LogID  string
		First  uint64
		Last   uint64
		Head   []byte
	}
	if err := decMode.Unmarshal(msg, &v); err != nil {
		return fmt.Errorf("not a checkpoint message: %w", err)
	}
	switch {
	case v.Domain != checkpointDomain:
		return fmt.Errorf("not a checkpoint message: domain %q, want %q", v.Domain, checkpointDomain)
	case v.First > v.Last:
		return fmt.Errorf("checkpoint message: first record %d after last %d", v.First, v.Last)
	case len(v.Head) != HashSize:
		return fmt.Errorf("checkpoint message: head of %d bytes, want %d", len(v.Head), HashSize)
	}
	if !bytes.Equal(CheckpointMessage(v.LogID, v.First, v.Last, v.Head), msg) {
		return errors.New("checkpoint message: not in deterministic CBOR")
	}
	return nil
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
	msg := CheckpointMessage(logID, first, last, head[:])
	sum := sha256.Sum256(msg)
	digest := sum[:]
	var sig []byte
	var err error
	if _, ok := s.Public().(ed25519.PublicKey); ok {
		sig, err = s.Sign(rand.Reader, digest, crypto.Hash(0)) // Ed25519 signs the digest as its message
	} else {
		// The whole message, so that a signer that signs only what it
		// recognises (the identity service: TLS handshakes and
		// checkpoints, never a certificate) sees what it signs. Any other
		// signer gets the digest, as before.
		sig, err = crypto.SignMessage(s, rand.Reader, msg, crypto.SHA256)
	}
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
