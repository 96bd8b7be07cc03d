package auth

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"os"

	"github.com/fxamacker/cbor/v2"

	"github.com/otgate/otgate/internal/atomicfile"
)

// The store file is an envelope around the encrypted store:
//
//	envelope{Version, Nonce, Ciphertext}
//	Ciphertext = AES-256-GCM(store key, Nonce, CBOR(storeData), AD)
//
// Both layers are deterministic CBOR. AD binds the ciphertext to its
// purpose so no other file sealed under the same key can stand in for it.
const (
	storeVersion = 1
	storeAD      = "otgate proxy user store v1"
)

type envelope struct {
	Version    int    `cbor:"1,keyasint"`
	Nonce      []byte `cbor:"2,keyasint"`
	Ciphertext []byte `cbor:"3,keyasint"`
}

var (
	encMode = func() cbor.EncMode {
		o := cbor.CoreDetEncOptions()
		o.Time = cbor.TimeRFC3339NanoUTC
		m, err := o.EncMode()
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

func newAEAD(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

func corrupt(path, problem string, err error) error {
	return &StoreError{Path: path, Kind: ErrStoreCorrupt, Problem: problem, Err: err}
}

// readStoreFile decrypts and decodes path into d. A missing file is
// reported with os.ErrNotExist.
func readStoreFile(path string, aead cipher.AEAD, d *storeData) error {
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return err
		}
		return fmt.Errorf("auth: read %s: %w", path, err)
	}
	if len(b) == 0 {
		return corrupt(path, "file is empty", nil)
	}
	var env envelope
	if err := decMode.Unmarshal(b, &env); err != nil {
		return corrupt(path, "not a valid store envelope", err)
	}
	if env.Version != storeVersion {
		return corrupt(path, fmt.Sprintf("format version %d, this build reads version %d", env.Version, storeVersion), nil)
	}
	if len(env.Nonce) != aead.NonceSize() {
		return corrupt(path, fmt.Sprintf("nonce of %d bytes, want %d", len(env.Nonce), aead.NonceSize()), nil)
	}
	plain, err := aead.Open(nil, env.Nonce, env.Ciphertext, []byte(storeAD))
	if err != nil {
		// GCM cannot tell a wrong key from a modified ciphertext.
		return &StoreError{Path: path, Kind: ErrStoreUndecryptable,
			Problem: "authentication failed: the file was sealed under another store key, or its ciphertext was modified", Err: err}
	}
	if err := decMode.Unmarshal(plain, d); err != nil {
		return corrupt(path, "decrypted content is not a valid store", err)
	}
	if d.Version != storeVersion {
		return corrupt(path, fmt.Sprintf("store version %d, this build reads version %d", d.Version, storeVersion), nil)
	}
	return d.check(path)
}

// writeStoreFile encrypts d under a fresh nonce and replaces path
// atomically.
func writeStoreFile(path string, aead cipher.AEAD, d *storeData) error {
	plain, err := encMode.Marshal(d)
	if err != nil {
		return fmt.Errorf("auth: encode store: %w", err)
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return fmt.Errorf("auth: nonce: %w", err)
	}
	b, err := encMode.Marshal(envelope{Version: storeVersion, Nonce: nonce, Ciphertext: aead.Seal(nil, nonce, plain, []byte(storeAD))})
	if err != nil {
		return fmt.Errorf("auth: encode store envelope: %w", err)
	}
	if err := atomicfile.Write(path, b, 0o600); err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	return nil
}
