package client

import (
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// Files of a profile directory.
const (
	ProfileFile = "gate.json"
	KeyFile     = "key.pem"
	CertFile    = "cert.pem"
	// GateCertFile is the gate's certificate as the login checked it
	// (by the pin or the CA): what a Modbus/TCP Security client, which
	// knows no pins, trusts (with cert.pem and key.pem as its own). The
	// client itself never reads it.
	GateCertFile = "gate.pem"
)

// Profile is what login stores.
type Profile struct {
	// Gate is host:port.
	Gate string `json:"gate"`
	// Pin is the hex SHA-256 of the gate certificate's SubjectPublicKeyInfo.
	Pin string `json:"pin"`
	// CAFile, when set, is checked as well as the pin.
	CAFile string `json:"ca_file,omitempty"`
	// GateID, with CAFile, is the gate identity (spiffe://SITE/gate/SERIAL)
	// the gate's certificate must name: the CA vouches for every
	// certificate it issued, this names the gate (see gateid.go).
	GateID string    `json:"gate_id,omitempty"`
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

// LoadProfile reads the profile in dir. The directory and the file must
// be the user's own and closed to others (checkOwn): an
// *UnprotectedError says what to do otherwise.
func LoadProfile(dir string) (*Profile, error) { return loadProfile(dir, true) }

// loadProfile is LoadProfile, checking the owner and the modes or not.
func loadProfile(dir string, check bool) (*Profile, error) {
	path := filepath.Join(dir, ProfileFile)
	if check {
		// No profile is "not logged in", in whatever directory.
		if _, err := os.Lstat(path); errors.Is(err, os.ErrNotExist) {
			return nil, ErrNoProfile
		}
		if err := checkParents(dir); err != nil {
			return nil, err
		}
		fi, err := os.Stat(dir)
		if err != nil {
			return nil, err
		}
		if err := checkOwn(dir, fi, kindDir); err != nil {
			return nil, err
		}
	}
	b, _, err := readOwn(path, kindProfile, check)
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNoProfile
	}
	if err != nil {
		return nil, err
	}
	var p Profile
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	// Login writes both as ParseGate and Fingerprint give them: anything
	// else is damage (or an edit), and a pin read as written would only
	// make each command warn that the gate's key changed.
	if g, err := ParseGate(p.Gate); err != nil || g != p.Gate {
		return nil, fmt.Errorf("%s: gate %q is not host:port: the file is damaged: log in again", path, p.Gate)
	}
	if pin, err := CheckPin(p.Pin); err != nil || pin != p.Pin {
		return nil, fmt.Errorf("%s: pin %q is not a gate key's SHA-256 (64 lowercase hex digits): the file is damaged: log in again", path, p.Pin)
	}
	if p.GateID != "" {
		if _, err := CheckGateID(p.GateID); err != nil {
			return nil, fmt.Errorf("%s: gate_id %q is not a gate identity (spiffe://SITE/gate/SERIAL): the file is damaged: log in again", path, p.GateID)
		}
	}
	return &p, nil
}

// maxFileSize bounds what is read of a profile's file: a key, a chain of
// a few certificates, a small JSON object.
const maxFileSize = 1 << 20

// readOwn reads the regular file at path, first checking (when check) its
// owner and mode with checkOwn on the file opened, so that no other file
// can take its place between the check and the read. fi is the opened
// file's.
func readOwn(path string, kind fileKind, check bool) (b []byte, fi fs.FileInfo, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	if fi, err = f.Stat(); err != nil {
		return nil, nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, nil, fmt.Errorf("%s is not a regular file (%v): log in again", path, fi.Mode().Type())
	}
	if check {
		if err := checkOwn(path, fi, kind); err != nil {
			return nil, nil, err
		}
	}
	if b, err = io.ReadAll(io.LimitReader(f, maxFileSize+1)); err != nil {
		return nil, nil, err
	}
	if len(b) > maxFileSize {
		return nil, nil, fmt.Errorf("%s is larger than %d bytes, no file login writes: log in again", path, maxFileSize)
	}
	return b, fi, nil
}

// storeLogin stores what a login brought: the profile (gate, pin,
// expiry), the key, the certificate chain and the gate's certificate
// (gateCert, DER, as the login checked it; nil: none, GateCertFile is
// removed). No file system replaces four files at once, so the
// certificate goes first and comes back last: a login cut short (a
// crash, a full disk) leaves no certificate, that is "not logged in",
// never a key and a certificate that do not belong together, nor a
// credential beside a profile naming another gate.
func storeLogin(dir string, p *Profile, key *ecdsa.PrivateKey, chain [][]byte, gateCert []byte) error {
	if err := makeProfileDir(dir); err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(dir, CertFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if gateCert == nil {
		if err := os.Remove(filepath.Join(dir, GateCertFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	} else if err := writeFileAtomic(filepath.Join(dir, GateCertFile), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: gateCert})); err != nil {
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

// makeProfileDir makes dir, closed to others. Nothing is made below a
// directory others could rename it out of.
func makeProfileDir(dir string) error {
	if err := checkDir(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return restrictDir(dir)
}

// credential is what a profile directory holds, read and checked.
type credential struct {
	profile *Profile
	cert    *tls.Certificate
	// certInfo is the certificate file's, as read: a new login replaces
	// the file (Session.Follow).
	certInfo fs.FileInfo
}

// readCredential reads the profile, the certificate and the key in dir;
// with check, each must be the user's own and closed to others
// (checkOwn), or it returns an *UnprotectedError and reads no further.
func readCredential(dir string, check bool) (*credential, error) {
	p, err := loadProfile(dir, check)
	if err != nil {
		return nil, err
	}
	certPEM, fi, err := readOwn(filepath.Join(dir, CertFile), kindCert, check)
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNoProfile
	}
	if err != nil {
		return nil, err
	}
	keyPEM, _, err := readOwn(filepath.Join(dir, KeyFile), kindKey, check)
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNoProfile
	}
	if err != nil {
		return nil, err
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		// A key and a certificate that do not belong together, or a
		// damaged file: only a new login mends it.
		return nil, fmt.Errorf("the credential in %s is unusable (%v): log in again", dir, err)
	}
	if c.Leaf == nil {
		if c.Leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return nil, fmt.Errorf("the credential in %s is unusable (%v): log in again", dir, err)
		}
	}
	return &credential{profile: p, cert: &c, certInfo: fi}, nil
}

// RemoveProfile deletes the credential and the profile.
func RemoveProfile(dir string) error {
	var errs []error
	for _, f := range []string{KeyFile, CertFile, ProfileFile, GateCertFile} {
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
