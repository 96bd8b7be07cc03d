package identity

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"math/big"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// deviceKeyTemplate is the device key: ECC P-256 signing, non-duplicable.
// The scheme is left NULL so each TPM2_Sign names the hash that matches the
// digest (TLS asks for SHA-256 with P-256, audit checkpoints may use
// others).
var deviceKeyTemplate = tpm2.TPMTPublic{
	Type:    tpm2.TPMAlgECC,
	NameAlg: tpm2.TPMAlgSHA256,
	ObjectAttributes: tpm2.TPMAObject{
		FixedTPM:            true,
		FixedParent:         true,
		SensitiveDataOrigin: true,
		UserWithAuth:        true,
		NoDA:                true,
		SignEncrypt:         true,
		Decrypt:             false,
		Restricted:          false,
	},
	Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
		CurveID: tpm2.TPMECCNistP256,
		Scheme:  tpm2.TPMTECCScheme{Scheme: tpm2.TPMAlgNull},
		KDF:     tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgNull},
	}),
	Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
		X: tpm2.TPM2BECCParameter{Buffer: make([]byte, 32)},
		Y: tpm2.TPM2BECCParameter{Buffer: make([]byte, 32)},
	}),
}

// SRKHandle is where the storage root key is kept persistent: the handle
// the TCG provisioning guidance reserves for it (as Windows and systemd
// use it).
const SRKHandle = tpm2.TPMHandle(0x81000001)

// persistSRK makes the SRK (transient handle p) persistent at SRKHandle,
// which the caller found free, so that later starts need no CreatePrimary
// and the kernel's resource manager has one object fewer to swap in and
// out around every command. When the TPM refuses (the handle was taken
// since: TPM_RC_NV_DEFINED), the identity re-creates the SRK on each
// start, as before.
func persistSRK(t transport.TPM, p srkKey) error {
	if _, err := (tpm2.EvictControl{Auth: tpm2.TPMRHOwner, ObjectHandle: &p.NamedHandle, PersistentHandle: SRKHandle}).Execute(t); err != nil {
		return fmt.Errorf("make the SRK persistent at %#x: %w", uint32(SRKHandle), err)
	}
	return nil
}

// srkKey is the storage root key as this package holds it: its handle and
// name, and its public area, the salt key of the sessions that carry the
// data key encrypted over the TPM's bus (dataKeySession).
type srkKey struct {
	tpm2.NamedHandle
	pub tpm2.TPMTPublic
}

// persistentSRK returns the SRK at SRKHandle when it is the one named name
// (recorded when the identity was created).
func persistentSRK(t transport.TPM, name []byte) (srkKey, bool) {
	if len(name) == 0 {
		return srkKey{}, false
	}
	rsp, err := (tpm2.ReadPublic{ObjectHandle: SRKHandle}).Execute(t)
	if err != nil || !bytes.Equal(rsp.Name.Buffer, name) {
		return srkKey{}, false
	}
	pub, err := rsp.OutPublic.Contents()
	if err != nil {
		return srkKey{}, false
	}
	return srkKey{NamedHandle: tpm2.NamedHandle{Handle: SRKHandle, Name: rsp.Name}, pub: *pub}, true
}

// srk re-creates the storage root key from the standard ECC SRK template.
// The caller flushes it.
func srk(t transport.TPM) (srkKey, error) {
	rsp, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.TPMRHOwner,
		InPublic:      tpm2.New2B(tpm2.ECCSRKTemplate),
	}.Execute(t)
	if err != nil {
		return srkKey{}, fmt.Errorf("identity: create SRK (ECC P-256, owner hierarchy): %w", err)
	}
	pub, err := rsp.OutPublic.Contents()
	if err != nil {
		flush(t, rsp.ObjectHandle)
		return srkKey{}, fmt.Errorf("identity: create SRK: public area: %w", err)
	}
	return srkKey{NamedHandle: tpm2.NamedHandle{Handle: rsp.ObjectHandle, Name: rsp.Name}, pub: *pub}, nil
}

// dataKeySession is a one-use session salted with the SRK (an ECDH
// secret only the TPM and this process know) that encrypts the data key
// where it crosses the TPM's bus: dir EncryptIn for the TPM2_Create that
// seals it, EncryptOut for the TPM2_Unseal's answer. A probe on the bus
// of a discrete TPM reads every byte of both in the clear otherwise.
func dataKeySession(parent *srkKey, dir tpm2.AuthOption) tpm2.Session {
	return tpm2.HMAC(tpm2.TPMAlgSHA256, 16, tpm2.Salted(parent.Handle, parent.pub), dir)
}

func flush(t transport.TPM, h tpm2.TPMHandle) {
	tpm2.FlushContext{FlushHandle: h}.Execute(t) //nolint:errcheck // best effort
}

// createDeviceKey creates the device key under the SRK parent and returns
// its TPM2B_PUBLIC and TPM2B_PRIVATE blobs.
func createDeviceKey(t transport.TPM, parent srkKey) (pub, priv []byte, err error) {
	rsp, err := tpm2.Create{
		ParentHandle: tpm2.AuthHandle{Handle: parent.Handle, Name: parent.Name, Auth: tpm2.PasswordAuth(nil)},
		InPublic:     tpm2.New2B(deviceKeyTemplate),
	}.Execute(t)
	if err != nil {
		return nil, nil, fmt.Errorf("identity: create device key: %w", err)
	}
	return tpm2.Marshal(rsp.OutPublic), tpm2.Marshal(rsp.OutPrivate), nil
}

// errBlobRefused: a key blob does not decode or the TPM refuses to load it.
var errBlobRefused = errors.New("TPM object blob refused")

// loadObject loads a child of the SRK from its blobs. parent is an SRK
// the caller holds (Open loads the device key and unseals with one: each
// CreatePrimary is TPM round trips on the boot's critical path); nil
// creates one and flushes it again at once: a loaded child does not need
// its parent loaded.
func loadObject(t transport.TPM, parent *srkKey, pubBlob, privBlob []byte) (tpm2.NamedHandle, *tpm2.TPMTPublic, error) {
	pub, err := tpm2.Unmarshal[tpm2.TPM2BPublic](pubBlob)
	if err != nil {
		return tpm2.NamedHandle{}, nil, fmt.Errorf("%w: public blob: %w", errBlobRefused, err)
	}
	pubArea, err := pub.Contents()
	if err != nil {
		return tpm2.NamedHandle{}, nil, fmt.Errorf("%w: public blob: %w", errBlobRefused, err)
	}
	priv, err := tpm2.Unmarshal[tpm2.TPM2BPrivate](privBlob)
	if err != nil {
		return tpm2.NamedHandle{}, nil, fmt.Errorf("%w: private blob: %w", errBlobRefused, err)
	}
	if parent == nil {
		p, err := srk(t)
		if err != nil {
			return tpm2.NamedHandle{}, nil, err
		}
		defer flush(t, p.Handle)
		parent = &p
	}
	rsp, err := tpm2.Load{
		ParentHandle: tpm2.AuthHandle{Handle: parent.Handle, Name: parent.Name, Auth: tpm2.PasswordAuth(nil)},
		InPublic:     *pub,
		InPrivate:    *priv,
	}.Execute(t)
	if err != nil {
		return tpm2.NamedHandle{}, nil, fmt.Errorf("%w (corrupted, made by another TPM, or the TPM owner hierarchy was cleared): %w", errBlobRefused, err)
	}
	return tpm2.NamedHandle{Handle: rsp.ObjectHandle, Name: rsp.Name}, pubArea, nil
}

// checkDeviceKeyAttributes refuses a public area that is not the device key
// this package creates (a replaced key.cbor must not slip in a duplicable
// or software-origin key).
func checkDeviceKeyAttributes(p *tpm2.TPMTPublic) error {
	a := p.ObjectAttributes
	switch {
	case p.Type != tpm2.TPMAlgECC:
		return errors.New("not an ECC key")
	case !a.FixedTPM || !a.FixedParent:
		return errors.New("key is duplicable (fixedTPM/fixedParent clear)")
	case !a.SensitiveDataOrigin:
		return errors.New("key was not generated inside the TPM (sensitiveDataOrigin clear)")
	case !a.SignEncrypt || a.Decrypt || a.Restricted:
		return errors.New("not an unrestricted signing-only key")
	}
	return nil
}

// tpmSigner is a crypto.Signer whose private key stays in the TPM.
type tpmSigner struct {
	t   transport.TPM
	key tpm2.NamedHandle
	pub *ecdsa.PublicKey
}

func newTPMSigner(t transport.TPM, key tpm2.NamedHandle, pubArea *tpm2.TPMTPublic) (*tpmSigner, error) {
	p, err := tpm2.Pub(*pubArea)
	if err != nil {
		return nil, fmt.Errorf("identity: device key public area: %w", err)
	}
	ec, ok := p.(*ecdsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("identity: device key is %T, want *ecdsa.PublicKey", p)
	}
	return &tpmSigner{t: t, key: key, pub: ec}, nil
}

func (s *tpmSigner) Public() crypto.PublicKey { return s.pub }

// Sign signs digest with TPM2_Sign (ECDSA); the result is ASN.1 DER as
// crypto.Signer requires.
func (s *tpmSigner) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	alg, err := tpmHash(digest, opts)
	if err != nil {
		return nil, err
	}
	rsp, err := tpm2.Sign{
		KeyHandle: tpm2.AuthHandle{Handle: s.key.Handle, Name: s.key.Name, Auth: tpm2.PasswordAuth(nil)},
		Digest:    tpm2.TPM2BDigest{Buffer: digest},
		InScheme: tpm2.TPMTSigScheme{
			Scheme:  tpm2.TPMAlgECDSA,
			Details: tpm2.NewTPMUSigScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSchemeHash{HashAlg: alg}),
		},
		Validation: tpm2.TPMTTKHashCheck{Tag: tpm2.TPMSTHashCheck, Hierarchy: tpm2.TPMRHNull},
	}.Execute(s.t)
	if err != nil {
		return nil, fmt.Errorf("identity: TPM2_Sign: %w", err)
	}
	sig, err := rsp.Signature.Signature.ECDSA()
	if err != nil {
		return nil, fmt.Errorf("identity: TPM2_Sign returned no ECDSA signature: %w", err)
	}
	return asn1.Marshal(struct{ R, S *big.Int }{
		new(big.Int).SetBytes(sig.SignatureR.Buffer),
		new(big.Int).SetBytes(sig.SignatureS.Buffer),
	})
}

func (s *tpmSigner) close() { flush(s.t, s.key.Handle) }

// tpmHash maps the signer options to a TPM hash algorithm and checks the
// digest length.
func tpmHash(digest []byte, opts crypto.SignerOpts) (tpm2.TPMAlgID, error) {
	if opts == nil {
		return 0, errors.New("identity: sign: no hash function given")
	}
	var alg tpm2.TPMAlgID
	h := opts.HashFunc()
	switch h {
	case crypto.SHA256:
		alg = tpm2.TPMAlgSHA256
	case crypto.SHA384:
		alg = tpm2.TPMAlgSHA384
	case crypto.SHA512:
		alg = tpm2.TPMAlgSHA512
	default:
		return 0, fmt.Errorf("identity: sign: unsupported hash %v (want SHA-256, SHA-384 or SHA-512)", h)
	}
	if len(digest) != h.Size() {
		return 0, fmt.Errorf("identity: sign: digest is %d bytes, %v needs %d", len(digest), h, h.Size())
	}
	return alg, nil
}
