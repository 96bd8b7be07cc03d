package client

import (
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Files of a profile directory.
const (
	ProfileFile = "gate.json"
	KeyFile     = "key.pem"
	CertFile    = "cert.pem"
)

// Profile is what login stores.
type Profile struct {
	// Gate is host:port.
	Gate string `json:"gate"`
	// Pin is the hex SHA-256 of the gate certificate's SubjectPublicKeyInfo.
	Pin string `json:"pin"`
	// CAFile, when set, is checked instead of (and as well as) the pin.
	CAFile string    `json:"ca_file,omitempty"`
	User   string    `json:"user,omitempty"`
	Expiry time.Time `json:"expiry,omitempty"`
}

// DefaultDir is os.UserConfigDir()/otgate.
func DefaultDir() (string, error) {
	d, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("find the user config directory: %w", err)
	}
	return filepath.Join(d, "otgate"), nil
}

// ErrNoProfile: not logged in.
var ErrNoProfile = errors.New("not logged in (run otgate login <gate>)")

// LoadProfile reads the profile in dir.
func LoadProfile(dir string) (*Profile, error) {
	b, err := os.ReadFile(filepath.Join(dir, ProfileFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNoProfile
	}
	if err != nil {
		return nil, err
	}
	var p Profile
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, ProfileFile), err)
	}
	if p.Gate == "" || p.Pin == "" {
		return nil, fmt.Errorf("%s: no gate or pin", filepath.Join(dir, ProfileFile))
	}
	return &p, nil
}

// storeLogin stores what a login brought: the profile (gate, pin,
// expiry), the key and the certificate chain. No file system replaces
// three files at once, so the certificate goes first and comes back last:
// a login cut short (a crash, a full disk) leaves no certificate, that is
// "not logged in", never a key and a certificate that do not belong
// together, nor a credential beside a profile naming another gate.
func storeLogin(dir string, p *Profile, key *ecdsa.PrivateKey, chain [][]byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := restrictDir(dir); err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(dir, CertFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(dir, KeyFile), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})); err != nil {
		return err
	}
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(dir, ProfileFile), append(b, '\n')); err != nil {
		return err
	}
	var certs []byte
	for _, c := range chain {
		certs = append(certs, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c})...)
	}
	return writeFileAtomic(filepath.Join(dir, CertFile), certs)
}

// loadCredential returns the TLS client certificate of dir.
func loadCredential(dir string) (*tls.Certificate, error) {
	c, err := tls.LoadX509KeyPair(filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNoProfile
	}
	if err != nil {
		// A key and a certificate that do not belong together, or a
		// damaged file: only a new login mends it.
		return nil, fmt.Errorf("the credential in %s is unusable (%v): log in again", dir, err)
	}
	return &c, nil
}

// RemoveProfile deletes the credential and the profile.
func RemoveProfile(dir string) error {
	var errs []error
	for _, f := range []string{KeyFile, CertFile, ProfileFile} {
		if err := os.Remove(filepath.Join(dir, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// writeFileAtomic writes a 0600 file via a temporary file and rename.
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(0o600); err != nil && !isWindows() {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
