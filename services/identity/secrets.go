package identity

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/otgate/otgate/internal/atomicfile"
	"github.com/otgate/otgate/internal/namepattern"
)

// dataKeySize is the size of the sealed data key: AES-256.
const dataKeySize = 32

// ErrSecretNotFound: no secret of that name has been sealed.
var ErrSecretNotFound = errors.New("secret not found")

// Limits on the secrets a caller seals through the socket, so a confused
// or compromised service cannot fill /perm (which also holds the audit
// log and the policy). The gate's services seal keys and small records
// (the user store key: 32 bytes, the user CA: under 1 KiB); at most
// 32 x 64 KiB = 2 MiB a caller. Replacing a secret does not count again.
const (
	MaxSecretSize       = 64 << 10
	MaxSecretsPerCaller = 32
)

// ErrSecretLimit: a seal over MaxSecretSize or past MaxSecretsPerCaller.
var ErrSecretLimit = errors.New("secret limit")

// checkSecretLimits refuses a secret of size bytes for owner/name when it
// is over MaxSecretSize, or when it is a new name and owner already holds
// MaxSecretsPerCaller secrets.
func checkSecretLimits(dir, owner, name string, size int) error {
	if size > MaxSecretSize {
		return fmt.Errorf("identity: seal %s/%s: %w: the secret is %d bytes, over the limit of %d bytes (MaxSecretSize)", owner, name, ErrSecretLimit, size, MaxSecretSize)
	}
	path, err := secretPath(dir, owner, name)
	if err != nil {
		return err
	}
	if _, err := os.Lstat(path); err == nil {
		return nil // a replacement
	}
	n, err := countSecrets(filepath.Dir(path))
	if err != nil {
		return err
	}
	if n >= MaxSecretsPerCaller {
		return fmt.Errorf("identity: seal %s/%s: %w: %s already holds %d secrets, the limit (MaxSecretsPerCaller); replace or stop using one", owner, name, ErrSecretLimit, owner, n)
	}
	return nil
}

// countSecrets counts the secrets stored in one owner's directory (files
// named as sealSecret names them; temporary files are not secrets).
func countSecrets(dir string) (int, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("identity: count secrets: %w", err)
	}
	n := 0
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".cbor")
		if ok && e.Type().IsRegular() && secretNameRE.MatchString(name) {
			n++
		}
	}
	return n, nil
}

// dataKey holds the unsealed data key. It refuses to be printed or
// marshalled so it cannot end up in a log or a response by accident.
type dataKey struct{ b []byte }

func (dataKey) String() string   { return "identity.dataKey[redacted]" }
func (dataKey) GoString() string { return "identity.dataKey[redacted]" }
func (dataKey) MarshalText() ([]byte, error) {
	return nil, errors.New("identity: refusing to marshal the data key")
}
func (dataKey) MarshalBinary() ([]byte, error) {
	return nil, errors.New("identity: refusing to marshal the data key")
}
func (dataKey) MarshalCBOR() ([]byte, error) {
	return nil, errors.New("identity: refusing to marshal the data key")
}

var secretNameRE = namepattern.New("[a-z0-9]", "[a-z0-9._-]", 64)

// secretPath checks owner and name and returns the file of the secret.
func secretPath(dir, owner, name string) (string, error) {
	if !secretNameRE.MatchString(owner) {
		return "", fmt.Errorf("identity: bad secret owner %q (want %s)", owner, secretNameRE)
	}
	if !secretNameRE.MatchString(name) {
		return "", fmt.Errorf("identity: bad secret name %q (want %s)", name, secretNameRE)
	}
	return filepath.Join(dir, SecretsDir, owner, name+".cbor"), nil
}

// secretAD binds a ciphertext to its full name: a file renamed or copied
// to another name does not decrypt.
func secretAD(owner, name string) []byte {
	return []byte("otgate-identity-secret\x00" + owner + "/" + name)
}

func (k *dataKey) aead() (cipher.AEAD, error) {
	block, err := aes.NewCipher(k.b)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// sealSecret encrypts plaintext under the data key and stores it.
func sealSecret(dir string, k *dataKey, owner, name string, plaintext []byte) error {
	path, err := secretPath(dir, owner, name)
	if err != nil {
		return err
	}
	aead, err := k.aead()
	if err != nil {
		return err
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return err
	}
	rec := &secretRecord{
		Version: stateVersion, Name: owner + "/" + name, Nonce: nonce,
		Ciphertext: aead.Seal(nil, nonce, plaintext, secretAD(owner, name)),
	}
	// Each new directory durable in its parent before anything is
	// written inside.
	if err := atomicfile.MkdirAll(filepath.Dir(path), 0o700, syncDir); err != nil {
		return fmt.Errorf("identity: %w", err)
	}
	return writeState(filepath.Dir(path), filepath.Base(path), rec)
}

// openSecret reads and decrypts a stored secret.
func openSecret(dir string, k *dataKey, owner, name string) ([]byte, error) {
	path, err := secretPath(dir, owner, name)
	if err != nil {
		return nil, err
	}
	var rec secretRecord
	if err := readState(filepath.Dir(path), filepath.Base(path), &rec); err != nil {
		if errors.Is(err, ErrStateMissing) {
			return nil, fmt.Errorf("identity: %w: %s/%s", ErrSecretNotFound, owner, name)
		}
		return nil, err
	}
	if rec.Name != owner+"/"+name {
		return nil, corrupt(path, fmt.Sprintf("holds secret %q", rec.Name), nil)
	}
	aead, err := k.aead()
	if err != nil {
		return nil, err
	}
	if len(rec.Nonce) != aead.NonceSize() {
		return nil, corrupt(path, fmt.Sprintf("nonce is %d bytes", len(rec.Nonce)), nil)
	}
	pt, err := aead.Open(nil, rec.Nonce, rec.Ciphertext, secretAD(owner, name))
	if err != nil {
		return nil, corrupt(path, "does not decrypt under this device's data key", err)
	}
	return pt, nil
}
