package auth

import (
	"crypto/rand"
	"errors"
	"fmt"

	"github.com/otgate/otgate/services/identity/api"
)

// SecretSealer keeps named secrets sealed by the device identity. The
// identity service's *api.Client implements it. Unseal of a name never
// sealed must return an error matching api.ErrNotFound (errors.Is).
type SecretSealer interface {
	Seal(name string, data []byte) error
	Unseal(name string) ([]byte, error)
}

// StoreKeySecret is the name of the sealed store key.
const StoreKeySecret = "userstore-key"

const storeKeyLen = 32 // AES-256

// storeKey returns the sealed store key. When none is sealed yet it makes
// one, but only if the store file does not exist: a store whose key is
// gone must never be silently replaced by an empty one.
func storeKey(s SecretSealer, fileExists bool, path string) ([]byte, error) {
	k, err := s.Unseal(StoreKeySecret)
	switch {
	case err == nil:
		if len(k) != storeKeyLen {
			return nil, &StoreError{Path: path, Kind: ErrStoreKey,
				Problem: fmt.Sprintf("sealed secret %q holds %d bytes, want %d", StoreKeySecret, len(k), storeKeyLen)}
		}
		return k, nil
	case errors.Is(err, api.ErrNotFound) && fileExists:
		return nil, &StoreError{Path: path, Kind: ErrStoreKey,
			Problem: fmt.Sprintf("the store exists but the identity service has no secret %q for this caller (another gate's store, a reset identity, or the wrong service uid)", StoreKeySecret),
			Err:     err}
	case errors.Is(err, api.ErrNotFound):
		k = make([]byte, storeKeyLen)
		if _, err := rand.Read(k); err != nil {
			return nil, fmt.Errorf("auth: make store key: %w", err)
		}
		if err := s.Seal(StoreKeySecret, k); err != nil {
			return nil, fmt.Errorf("auth: seal new store key as %q: %w", StoreKeySecret, err)
		}
		return k, nil
	default:
		return nil, fmt.Errorf("auth: unseal store key %q: %w", StoreKeySecret, err)
	}
}
