package identity

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// replacedIdentity is the identity a reset replaces, as far as known.
type replacedIdentity struct {
	Dir            string // base name of the directory it was moved to ("": none)
	Serial         string
	KeyFingerprint string
}

// create makes a new identity for cfg in a fresh directory next to
// cfg.StateDir and renames it into place, so a power cut leaves either no
// identity or a whole one. t is nil in dev mode; prev is the identity a
// reset replaces (nil on a first boot).
//
// In TPM mode the TPM is marked only once the identity is in place: the
// SRK is made persistent and MarkerNVIndex written after the rename, so a
// power cut during a first boot leaves no evidence of an identity that
// never existed (the next boot is a first boot again, not a refusal).
func create(cfg Config, t transport.TPM, prev *replacedIdentity) error {
	if err := checkSite(cfg.Site); err != nil {
		return err
	}
	if err := checkPersistent(cfg); err != nil {
		return err
	}
	pcrs, err := sealPCRs(cfg.BoardPCRs)
	if err != nil {
		return err
	}
	parent := filepath.Dir(cfg.StateDir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fmt.Errorf("identity: %w", err)
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(cfg.StateDir)+".new-*")
	if err != nil {
		return fmt.Errorf("identity: %w", err)
	}
	defer os.RemoveAll(tmp) // after a successful rename tmp no longer exists

	now := cfg.now()
	var (
		key    keyRecord
		signer crypto.Signer
		dev    deviceRecord
		seal   *sealRecord
	)
	dataKeyBytes := make([]byte, dataKeySize)
	if _, err := rand.Read(dataKeyBytes); err != nil {
		return err
	}
	dev = deviceRecord{Version: stateVersion, Site: cfg.Site, CreatedAt: now.Unix(), SelfSigned: true}
	if prev != nil {
		dev.ReplacedIdentity, dev.ReplacedAt = prev.Dir, now.Unix()
		dev.ReplacedSerial, dev.ReplacedKeyFingerprint = prev.Serial, prev.KeyFingerprint
	}
	var persistSRKAfter *srkKey // the SRK to make persistent, when SRKHandle is free
	if cfg.DevMode {
		k, err := ecdsa.GenerateKey(deviceCurve(), rand.Reader)
		if err != nil {
			return err
		}
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			return err
		}
		key = keyRecord{Version: stateVersion, Mode: ModeDev, SoftwareKey: der}
		signer = k
		seal = &sealRecord{Version: stateVersion, Mode: ModeDev, DevDataKey: dataKeyBytes}
		serial := make([]byte, 8)
		if _, err := rand.Read(serial); err != nil {
			return err
		}
		dev.Serial, dev.SerialSource = "dev-"+hex.EncodeToString(serial), "random"
	} else {
		ek, err := readEK(t)
		if err != nil {
			return err
		}
		dev.EKPublic, dev.EKCertRSA, dev.EKCertECC = ek.PublicDER, ek.CertRSA, ek.CertECC
		dev.Serial, dev.SerialSource = ek.serial(), "ek"
		// One SRK for the device key, the seal and, once the identity is
		// in place, the persistent copy (each CreatePrimary is a key
		// derivation: a large part of a start on a discrete TPM). With the
		// device key it is two transient objects, within swtpm's three.
		p, err := srk(t)
		if err != nil {
			return err
		}
		defer flush(t, p.Handle)
		pub, priv, err := createDeviceKey(t, p)
		if err != nil {
			return err
		}
		key = keyRecord{Version: stateVersion, Mode: ModeTPM, Public: pub, Private: priv}
		// The SRK is made persistent once the identity is in place; the
		// key record names it unless SRKHandle holds another key.
		if rsp, err := (tpm2.ReadPublic{ObjectHandle: SRKHandle}).Execute(t); err == nil {
			if bytes.Equal(rsp.Name.Buffer, p.Name.Buffer) {
				key.SRKName = p.Name.Buffer
			} else {
				fmt.Fprintf(cfg.logWriter(), "identity: the SRK is not kept in the TPM (handle %#x holds another key; left alone): every start re-creates it\n", uint32(SRKHandle))
			}
		} else {
			key.SRKName, persistSRKAfter = p.Name.Buffer, &p
		}
		h, pubArea, err := loadObject(t, &p, pub, priv)
		if err != nil {
			return fmt.Errorf("identity: load the device key just created: %w", err)
		}
		s, err := newTPMSigner(t, h, pubArea)
		if err != nil {
			flush(t, h.Handle)
			return err
		}
		defer s.close()
		signer = s
		if seal, err = sealDataKey(t, &p, pcrs, dataKeyBytes); err != nil {
			return err
		}
	}
	certDER, err := selfSignedDeviceCert(signer, cfg.Site, dev.Serial, cfg.DevMode, now)
	if err != nil {
		return err
	}
	dev.Cert = certDER
	if err := writeWorkloadCA(tmp, cfg.Site, dev.Serial, cfg.DevMode, &dataKey{b: dataKeyBytes}, now); err != nil {
		return err
	}
	for name, rec := range map[string]any{KeyFile: &key, SealFile: seal, DeviceFile: &dev} {
		if err := writeState(tmp, name, rec); err != nil {
			return err
		}
	}
	if err := os.Chmod(tmp, 0o700); err != nil {
		return fmt.Errorf("identity: %w", err)
	}
	// rename(2) replaces an empty directory: a pre-made empty state dir is
	// fine, a non-empty one makes this fail rather than mix identities.
	if err := os.Rename(tmp, cfg.StateDir); err != nil {
		return fmt.Errorf("identity: move new identity into %s: %w", cfg.StateDir, err)
	}
	if err := syncDir(parent); err != nil {
		return err
	}
	if t != nil {
		markTPM(cfg, t, persistSRKAfter, &markerRecord{Version: stateVersion, Serial: dev.Serial,
			KeyFingerprint: keyFingerprint(signer.Public()), CreatedAt: now.Unix()})
	}
	return nil
}

// markTPM makes the SRK persistent (persist, the transient SRK, when the key
// record names it and SRKHandle was free; nil: nothing to do) and writes
// the identity marker m (nil: none). Failures are logged, not fatal: the identity is in
// place; without the persistent SRK every start re-creates it, without
// the marker a lost /perm is recognised by the SRK alone.
func markTPM(cfg Config, t transport.TPM, persist *srkKey, m *markerRecord) {
	w := cfg.logWriter()
	if persist != nil {
		if err := persistSRK(t, *persist); err != nil {
			fmt.Fprintf(w, "identity: the SRK is not kept in the TPM (%v): every start re-creates it\n", err)
		}
	}
	if m == nil {
		return
	}
	if err := writeMarker(t, m); err != nil {
		fmt.Fprintf(w, "identity: WARNING: could not record the identity in the TPM (%v): a lost /perm is recognised only by the persistent SRK\n", err)
	}
}

// writeWorkloadCA makes a workload CA (a self-signed root, see
// newWorkloadCA), seals its key as a secret and writes its certificate.
func writeWorkloadCA(dir, site, serial string, devMode bool, dk *dataKey, now time.Time) error {
	caKey, caDER, err := newWorkloadCA(site, serial, devMode, now)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(caKey)
	if err != nil {
		return err
	}
	if err := sealSecret(dir, dk, identitySecretOwner, workloadCAKeySecret, keyDER); err != nil {
		return err
	}
	return writeState(dir, WorkloadCAFile, &workloadCARecord{Version: stateVersion, Cert: caDER})
}

// Reset moves the identity in cfg.StateDir aside (to
// <StateDir>.replaced-<time>) and creates a new one: a new device key, a new
// serial in dev mode, new certificates, a new data key; secrets sealed under
// the old data key stay in the old directory and are unreadable. The gate
// becomes a different device. It is also the way past ErrEarlierIdentity
// (a lost /perm). The new identity records what it replaced (the old
// directory, serial and device key fingerprint, from the old device.cbor
// or the TPM's marker) and when; the service logs it at its next start.
// It returns the directory the old state was moved to ("" if there was
// none).
func Reset(cfg Config) (string, error) {
	w := cfg.logWriter()
	if err := checkPersistent(cfg); err != nil {
		return "", fmt.Errorf("identity: reset: %w", err)
	}
	var t transport.TPMCloser
	if !cfg.DevMode {
		if cfg.TPM.open == nil {
			return "", fmt.Errorf("identity: reset: %w", ErrNoTPM)
		}
		var err error
		if t, err = cfg.TPM.Open(); err != nil {
			return "", fmt.Errorf("identity: reset: %w", err)
		}
		defer t.Close()
	}
	var prev *replacedIdentity
	if exists, err := stateExists(cfg.StateDir); exists || err != nil {
		prev = &replacedIdentity{}
		var d deviceRecord
		if readState(cfg.StateDir, DeviceFile, &d) == nil {
			prev.Serial = d.Serial
			if c, err := x509.ParseCertificate(d.Cert); err == nil {
				prev.KeyFingerprint = keyFingerprint(c.PublicKey)
			}
		}
	}
	if t != nil && (prev == nil || prev.Serial == "") {
		evidence, m, err := earlierIdentity(t)
		if err != nil {
			return "", fmt.Errorf("identity: reset: %w", err)
		}
		if evidence != "" {
			if prev == nil {
				prev = &replacedIdentity{}
			}
			if m != nil {
				prev.Serial, prev.KeyFingerprint = m.Serial, m.KeyFingerprint
			}
			fmt.Fprintf(w, "identity: RESET: the TPM shows an earlier identity: %s\n", evidence)
		}
	}
	old := ""
	if _, err := os.Stat(cfg.StateDir); err == nil {
		old = fmt.Sprintf("%s.replaced-%s", cfg.StateDir, cfg.now().UTC().Format("20060102T150405Z"))
		if err := os.Rename(cfg.StateDir, old); err != nil {
			return "", fmt.Errorf("identity: reset: move %s aside: %w", cfg.StateDir, err)
		}
		if err := syncDir(filepath.Dir(cfg.StateDir)); err != nil {
			return "", err
		}
		fmt.Fprintf(w, "identity: RESET: old identity moved to %s\n", old)
		if prev != nil {
			prev.Dir = filepath.Base(old)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("identity: reset: %w", err)
	}
	var tt transport.TPM
	if t != nil {
		tt = t
	}
	if err := create(cfg, tt, prev); err != nil {
		return old, fmt.Errorf("identity: reset: create new identity (old one is in %s): %w", old, err)
	}
	what := "no earlier identity"
	if prev != nil {
		what = fmt.Sprintf("replacing serial %s, device key %s", orUnknown(prev.Serial), orUnknown(prev.KeyFingerprint))
	}
	fmt.Fprintf(w, "identity: RESET: created a NEW device identity in %s (%s; this gate is now a different device)\n", cfg.StateDir, what)
	return old, nil
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}
