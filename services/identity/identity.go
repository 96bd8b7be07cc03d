package identity

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/google/go-tpm/tpm2/transport"

	"github.com/google/go-tpm/tpm2"

	"github.com/otgate/otgate/internal/atomicfile"
)

// ErrNoTPM: no TPM is configured and dev mode is not set.
var ErrNoTPM = errors.New("no TPM: refusing to start without a TPM unless dev mode is set")

// ErrQuarantine: the gate is in quarantine (the data key did not unseal),
// and the request needs the data key or would vouch for the gate (a
// signature, its certificate, a workload certificate).
var ErrQuarantine = errors.New("gate is in quarantine")

// Config says where the identity lives and how to reach the TPM.
type Config struct {
	// StateDir holds the identity files (/perm/identity on the appliance).
	StateDir string
	// Site is the SPIFFE trust domain of the gate's IDs. Used when the
	// identity is created; afterwards the recorded site is used.
	Site string
	// TPM opens the TPM. Required unless DevMode.
	TPM TPMOpener
	// DevMode uses a software key kept in StateDir instead of the TPM. Every
	// certificate it makes says so.
	DevMode bool
	// BoardPCRs are the PCRs (SHA-256 bank) the data key is sealed to, in
	// addition to MeasuredPCR. Used when the identity is created.
	BoardPCRs []uint
	// Create allows creating a new identity when StateDir holds none (first
	// boot). A partial or corrupt state is never replaced, and neither is
	// an identity the TPM shows was created on it before (ErrEarlierIdentity:
	// /perm lost); only Reset makes a new one then.
	Create bool
	// RequirePersistentState refuses to create a TPM identity (first boot
	// or Reset) when StateDir is on a tmpfs or ramfs (ErrVolatileState).
	// Set by Flags unless -allow-volatile-state; dev mode ignores it.
	RequirePersistentState bool
	// Service is set by the identity service itself: it logs, once, that
	// the identity replaced an earlier one (a reset), and records that it
	// did; the CLI's short opens leave that to the service.
	Service bool
	// Log receives the service's log lines; nil: standard error.
	Log io.Writer
	// Now is the clock; nil: time.Now.
	Now func() time.Time
	// StateWriteHook is called after each step of the atomic writes of the
	// seal slots (nil in production): crash tests stop a write there.
	StateWriteHook atomicfile.Hook
}

// Quarantine explains why the data key is not available.
type Quarantine struct {
	Reason string
	Remedy string
	// RemedyShort is Remedy in one short clause (status notes).
	RemedyShort string
	Err         error
}

// Identity is an opened device identity.
type Identity struct {
	cfg    Config
	log    *log.Logger
	tpm    transport.TPMCloser // nil in dev mode
	signer crypto.Signer
	dev    bool
	device deviceRecord

	mu         sync.Mutex // guards device (install-cert) and the workload CA
	dataKey    *dataKey   // nil in quarantine
	quarantine *Quarantine
	wcaKey     *ecdsa.PrivateKey
	wcaCert    *x509.Certificate
	// unpromoted is the next-boot slot this boot unsealed from when it
	// could not be promoted to SealFile (SealNextBoot promotes it first).
	unpromoted *sealRecord

	anchorMu sync.Mutex // one audit anchor read or advance at a time
	sealMu   sync.Mutex // one SealSecret at a time (the per-caller count)

	// steps times Open's steps (most are TPM commands), for StartupSteps.
	steps     []string
	stepStart time.Time
}

// step ends Open's step called name.
func (id *Identity) step(name string) {
	now := time.Now()
	id.steps = append(id.steps, fmt.Sprintf("%s %.2fs", name, now.Sub(id.stepStart).Seconds()))
	id.stepStart = now
}

// StartupSteps says how long Open's steps took ("tpm 0.01s, device key
// 0.20s, ..."): on a gate that boots slowly, it tells the TPM's share.
func (id *Identity) StartupSteps() string { return strings.Join(id.steps, ", ") }

func deviceCurve() elliptic.Curve { return elliptic.P256() }

func (c *Config) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// logWriter is where the identity's log lines go: Log, or standard error.
func (c Config) logWriter() io.Writer {
	if c.Log == nil {
		return os.Stderr
	}
	return c.Log
}

// Open opens the identity in cfg.StateDir, creating it on first boot when
// cfg.Create is set. A data key that does not unseal because the PCRs
// changed does not fail Open: the identity opens in quarantine (see
// Quarantine). Missing or corrupt state fails with a *StateError.
func Open(cfg Config) (*Identity, error) {
	id := &Identity{cfg: cfg, log: log.New(cfg.logWriter(), "identity: ", 0), dev: cfg.DevMode, stepStart: time.Now()}
	if cfg.StateDir == "" {
		return nil, errors.New("identity: no state directory configured")
	}
	if cfg.DevMode {
		id.log.Printf("WARNING: DEV MODE: the device key is a SOFTWARE key in %s and the data key is NOT sealed; never use this on a production gate", cfg.StateDir)
	} else {
		if cfg.TPM.open == nil {
			return nil, fmt.Errorf("identity: %w (pass the TPM device, or dev mode on a development host)", ErrNoTPM)
		}
		t, err := cfg.TPM.Open()
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrNoTPM, err)
		}
		id.tpm = t
		id.step("tpm")
	}
	exists, err := stateExists(cfg.StateDir)
	if err == nil && !exists {
		if !cfg.Create {
			err = fmt.Errorf("identity: %w in %s (first boot creates it; `otgate identity reset -yes` replaces one)", ErrNoIdentity, cfg.StateDir)
		} else {
			err = checkPersistent(cfg)
			if err == nil && !cfg.DevMode {
				// A TPM that held an identity before: /perm was lost, not
				// a first boot.
				err = refuseEarlierIdentity(cfg, id.tpm)
			}
			if err == nil {
				id.log.Printf("first boot: no identity in %s, creating a new device identity", cfg.StateDir)
				err = create(cfg, id.tpm, nil)
				id.step("create")
			}
		}
	}
	if err == nil {
		err = id.load()
	}
	if err != nil {
		id.Close()
		return nil, err
	}
	if cfg.Service {
		id.announceReplacement()
		_, warnings := id.DeviceCertificateStatus()
		for _, w := range warnings {
			id.log.Printf("WARNING: %s", w)
		}
	}
	return id, nil
}

// CertExpiryWarning is how long before its end the device certificate's
// coming expiry is reported (status, and the log at start).
const CertExpiryWarning = 30 * 24 * time.Hour

// DeviceCertificateStatus is the end of the device certificate's validity
// and what is wrong with it: it expired or expires within
// CertExpiryWarning, or it can certify (CertifyingDeviceCertificate).
func (id *Identity) DeviceCertificateStatus() (notAfter time.Time, warnings []string) {
	d := id.deviceRecord()
	cert, err := x509.ParseCertificate(d.Cert)
	if err != nil {
		return time.Time{}, nil // load refuses a device.cbor whose certificate does not parse
	}
	remedy := "`otgate identity renew-cert -yes` (self-signed)"
	if !d.SelfSigned {
		remedy = "have your CA issue a new one (`otgate identity csr`) and `otgate identity install-cert` it"
	}
	now := id.cfg.now()
	end := cert.NotAfter.UTC().Format(time.RFC3339)
	switch left := cert.NotAfter.Sub(now); {
	case left < 0:
		warnings = append(warnings, fmt.Sprintf("the device certificate EXPIRED on %s: clients that check it refuse the gate -- what to do: %s", end, remedy))
	case left < CertExpiryWarning:
		warnings = append(warnings, fmt.Sprintf("the device certificate expires on %s, in %d days -- what to do: %s", end, int(left.Hours()/24), remedy))
	}
	if w := certifyingWarning(cert, d.SelfSigned); w != "" {
		warnings = append(warnings, w)
	}
	return cert.NotAfter, warnings
}

// CertifyingDeviceCertificate says, when the device certificate can act
// as an issuer (a CA, or keyCertSign), why that is unsafe and what to do;
// "" when it cannot. Identities made before the self-signed certificate
// became an end entity keep their CA certificate: relying parties may hold
// it. The service logs this once at each start.
func (id *Identity) CertifyingDeviceCertificate() string {
	d := id.deviceRecord()
	cert, err := x509.ParseCertificate(d.Cert)
	if err != nil {
		return ""
	}
	return certifyingWarning(cert, d.SelfSigned)
}

// certifyingWarning is CertifyingDeviceCertificate's answer for the
// parsed device certificate (selfSigned as device.cbor records it).
func certifyingWarning(cert *x509.Certificate, selfSigned bool) string {
	why := certifies(cert)
	if why == "" {
		return ""
	}
	kind := "the installed device certificate"
	if selfSigned {
		kind = "the self-signed device certificate (made before device certificates became end entities)"
	}
	return fmt.Sprintf("%s (subject %q, serial %x) %s: the device key signs any digest the proxy sends through the sign operation, "+
		"so whoever holds the proxy's uid can issue certificates that chain to it -- what to do: "+
		"install an end-entity certificate for the device key (`otgate identity csr`, issued by your CA without CA:TRUE or keyCertSign, "+
		"then `otgate identity install-cert`) or `otgate identity renew-cert -yes` (a self-signed end-entity certificate for the same key: "+
		"client pins stay valid), and remove this certificate from every trust store that holds it as a CA",
		kind, cert.Subject.String(), cert.SerialNumber, why)
}

// announceReplacement logs, on the service's first start after a reset,
// that this identity replaced an earlier one, and records in device.cbor
// that it did so (once per reset, not on every start).
func (id *Identity) announceReplacement() {
	id.mu.Lock()
	defer id.mu.Unlock()
	d := id.device
	if d.ReplacedAt == 0 || d.ReplacementLogged {
		return
	}
	where := ""
	if d.ReplacedIdentity != "" {
		where = "; old state kept in " + filepath.Join(filepath.Dir(id.cfg.StateDir), d.ReplacedIdentity)
	}
	id.log.Printf("RESET: this device identity (serial %s, device key %s) REPLACED an earlier one on %s (`otgate identity reset`): old serial %s, old device key %s%s",
		d.Serial, keyFingerprint(id.signer.Public()), time.Unix(d.ReplacedAt, 0).UTC().Format(time.RFC3339),
		orUnknown(d.ReplacedSerial), orUnknown(d.ReplacedKeyFingerprint), where)
	d.ReplacementLogged = true
	if err := writeState(id.cfg.StateDir, DeviceFile, &d); err != nil {
		id.log.Printf("could not record that the reset was logged (it will be logged again at the next start): %v", err)
		return
	}
	id.device = d
}

// Close releases the TPM.
func (id *Identity) Close() error {
	if s, ok := id.signer.(*tpmSigner); ok {
		s.close()
	}
	if id.tpm != nil {
		return id.tpm.Close()
	}
	return nil
}

// load reads the state, unseals the data key and loads the device key.
//
// The data key comes first, while the device key is not loaded yet: the
// kernel's resource manager (/dev/tpmrm0) loads every object a process
// holds before each of its commands and saves and flushes it after, so
// each object held during the unseal's commands costs three more TPM
// commands per command. For the same reason the SRK is the persistent one
// at SRKHandle when the identity made it so.
func (id *Identity) load() error {
	dir := id.cfg.StateDir
	var key keyRecord
	if err := readState(dir, KeyFile, &key); err != nil {
		return err
	}
	keyPath := filepath.Join(dir, KeyFile)
	switch {
	case key.Mode == ModeDev && !id.dev:
		return corrupt(keyPath, "holds a dev-mode software key but dev mode is not set", nil)
	case key.Mode == ModeTPM && id.dev:
		return corrupt(keyPath, "holds a TPM key but dev mode is set (a TPM identity cannot be used in dev mode)", nil)
	case key.Mode != ModeTPM && key.Mode != ModeDev:
		return corrupt(keyPath, fmt.Sprintf("unknown key mode %q", key.Mode), nil)
	}
	var seal sealRecord
	if err := readState(dir, SealFile, &seal); err != nil {
		return err
	}
	sealPath := filepath.Join(dir, SealFile)
	if seal.Mode != key.Mode {
		return corrupt(sealPath, fmt.Sprintf("mode %q differs from %s mode %q", seal.Mode, KeyFile, key.Mode), nil)
	}
	if what, err := resolveResealPending(id.cfg, &seal); err != nil {
		return err
	} else if what != "" {
		id.log.Printf("%s", what)
	}

	var parent *srkKey
	unmarked := false // the key record names an SRK that is not persistent
	if key.Mode == ModeTPM {
		// One SRK for the unseal and the device key.
		p, ok := persistentSRK(id.tpm, key.SRKName)
		if !ok {
			var err error
			if p, err = srk(id.tpm); err != nil {
				return err
			}
			defer flush(id.tpm, p.Handle)
			unmarked = len(key.SRKName) > 0 && bytes.Equal(p.Name.Buffer, key.SRKName)
		}
		parent = &p
	}

	var dk []byte
	var mismatch *PCRMismatchError
	if seal.Mode == ModeDev {
		if len(seal.DevDataKey) != dataKeySize {
			return corrupt(sealPath, fmt.Sprintf("dev-mode data key is %d bytes, want %d", len(seal.DevDataKey), dataKeySize), nil)
		}
		dk = seal.DevDataKey
	} else {
		var err error
		dk, err = id.unsealSlots(parent, &seal, sealPath)
		switch {
		case errors.As(err, &mismatch):
			// Quarantine: the device key still signs (status, audit).
		case errors.Is(err, ErrStateCorrupt):
			// A TPM cleared or replaced refuses both blobs: name the
			// device key, the one that makes the gate this device.
			h, _, kerr := loadObject(id.tpm, parent, key.Public, key.Private)
			if errors.Is(kerr, errBlobRefused) {
				return corrupt(keyPath, "device key", kerr)
			}
			if kerr == nil {
				flush(id.tpm, h.Handle)
			}
			return err
		case err != nil:
			return err
		}
	}
	id.step("unseal")

	if key.Mode == ModeTPM {
		h, pub, err := loadObject(id.tpm, parent, key.Public, key.Private)
		if errors.Is(err, errBlobRefused) {
			return corrupt(keyPath, "device key", err)
		}
		if err != nil {
			return err
		}
		if err := checkDeviceKeyAttributes(pub); err != nil {
			flush(id.tpm, h.Handle)
			return corrupt(keyPath, "device key", err)
		}
		s, err := newTPMSigner(id.tpm, h, pub)
		if err != nil {
			flush(id.tpm, h.Handle)
			return corrupt(keyPath, "device key", err)
		}
		id.signer = s
		id.step("device key")
	} else {
		k, err := x509.ParsePKCS8PrivateKey(key.SoftwareKey)
		if err != nil {
			return corrupt(keyPath, "dev-mode software key", err)
		}
		ec, ok := k.(*ecdsa.PrivateKey)
		if !ok {
			return corrupt(keyPath, fmt.Sprintf("dev-mode software key is %T, want ECDSA", k), nil)
		}
		id.signer = ec
	}

	devPath := filepath.Join(dir, DeviceFile)
	if err := readState(dir, DeviceFile, &id.device); err != nil {
		return err
	}
	cert, err := x509.ParseCertificate(id.device.Cert)
	if err != nil {
		return corrupt(devPath, "device certificate", err)
	}
	if err := matchesKey(cert, id.signer.Public()); err != nil {
		return corrupt(devPath, "device certificate is not for the key in "+KeyFile, err)
	}
	if unmarked {
		id.markAfterCut(*parent)
	}
	if id.dev {
		id.log.Printf("WARNING: DEV MODE: identity %s uses a SOFTWARE key", DeviceURI(id.device.Site, id.device.Serial))
	} else {
		id.log.Printf("device identity %s (TPM key, %s)", DeviceURI(id.device.Site, id.device.Serial), id.cfg.TPM.Name)
	}
	if mismatch != nil {
		id.enterQuarantine(mismatch)
		return nil
	}
	id.dataKey = &dataKey{b: dk}
	err = id.loadWorkloadCA()
	id.step("workload CA")
	return err
}

// markAfterCut finishes marking the TPM for this identity when a start
// finds the SRK its key record names not persistent at SRKHandle and the
// handle free: a first boot or reset cut off (power, a TPM error) after
// the identity was renamed into place and before markTPM, or an operator
// evicted it. Without the persistent SRK and the marker a later lost
// /perm would look like a first boot and silently create a different
// device. The marker is written only when MarkerNVIndex holds none (an
// existing one is another identity's record, left as it is). An SRK the
// key record does not name (the handle held another key when the
// identity was made) is not repaired: that start reads nothing more.
func (id *Identity) markAfterCut(p srkKey) {
	if _, err := (tpm2.ReadPublic{ObjectHandle: SRKHandle}).Execute(id.tpm); err == nil {
		return // another key at the handle: not ours
	}
	var m *markerRecord
	if old, _, _ := readMarker(id.tpm); old == nil {
		// Undefined, or defined and never written.
		m = &markerRecord{Version: stateVersion, Serial: id.device.Serial,
			KeyFingerprint: keyFingerprint(id.signer.Public()), CreatedAt: id.device.CreatedAt}
	}
	what := "the SRK"
	if m != nil {
		what += " and the identity marker"
	}
	id.log.Printf("the TPM does not show this identity (the SRK is not persistent at %#x: its first boot was cut short, or it was evicted): writing %s now, so a lost /perm is refused, not taken for a first boot", uint32(SRKHandle), what)
	markTPM(id.cfg, id.tpm, &p, m)
}

func (id *Identity) loadWorkloadCA() error {
	dir := id.cfg.StateDir
	path := filepath.Join(dir, WorkloadCAFile)
	var rec workloadCARecord
	if err := readState(dir, WorkloadCAFile, &rec); err != nil {
		return err
	}
	cert, err := x509.ParseCertificate(rec.Cert)
	if err != nil {
		return corrupt(path, "workload CA certificate", err)
	}
	der, err := openSecret(dir, id.dataKey, identitySecretOwner, workloadCAKeySecret)
	if err != nil {
		return err
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return corrupt(path, "workload CA key (secret identity/"+workloadCAKeySecret+")", err)
	}
	ec, ok := k.(*ecdsa.PrivateKey)
	if !ok || !ec.PublicKey.Equal(cert.PublicKey) {
		return corrupt(path, "workload CA certificate does not match its key", nil)
	}
	id.wcaKey, id.wcaCert = ec, cert
	return nil
}

func (id *Identity) enterQuarantine(err *PCRMismatchError) {
	q := &Quarantine{Err: err, Reason: err.Error()}
	measured := false
	for _, c := range err.Changes {
		measured = measured || c.Measured
	}
	if measured {
		q.Remedy = "the booted image or its configuration differs from the one this gate was sealed to (a policy changed without `otgate site apply` on the running gate counts as tampering): boot the approved image or restore the previous policy, " +
			"or follow the break-glass recovery in services/identity/README.md (re-seal with `otgate identity reseal -yes` on a verified image)"
		q.RemedyShort = "boot the approved image and policy; if this one is verified and intended, `otgate identity reseal -yes` on the console (break-glass: services/identity/README.md)"
	} else {
		q.Remedy = "the platform (firmware, boot chain or board) measurements changed: restore the previous firmware, " +
			"or follow the break-glass recovery in services/identity/README.md"
		q.RemedyShort = "restore the previous firmware/boot chain; if the change is verified and intended, `otgate identity reseal -yes` on the console (break-glass: services/identity/README.md)"
	}
	id.quarantine = q
	id.log.Printf("GATE IN QUARANTINE: the sealed data key did not unseal: %s -- what to do: %s", q.Reason, q.Remedy)
}

// Quarantine reports why the gate is in quarantine, or nil.
func (id *Identity) Quarantine() *Quarantine { return id.quarantine }

// DevMode reports whether the identity uses a software key.
func (id *Identity) DevMode() bool { return id.dev }

// Signer is the device key. In TPM mode its private key never leaves the
// TPM. It signs in quarantine too (Reseal needs it): callers that vouch
// for the gate use SignDigest or the API, which refuse in quarantine.
func (id *Identity) Signer() crypto.Signer { return id.signer }

// Site and Serial of the device.
func (id *Identity) Site() string   { return id.deviceRecord().Site }
func (id *Identity) Serial() string { return id.deviceRecord().Serial }

// deviceRecord is a copy of the device record, read under the lock that
// DeviceCertificate holds to replace it (a certificate installed while
// the service runs): API calls on other connections read it meanwhile.
func (id *Identity) deviceRecord() deviceRecord {
	id.mu.Lock()
	defer id.mu.Unlock()
	return id.device
}

// SignDigest signs a digest with the device key (ECDSA, ASN.1 DER). It is
// refused in quarantine: an image the data key was not sealed to must not
// sign audit checkpoints (or anything else) as this gate.
func (id *Identity) SignDigest(digest []byte, h crypto.Hash) ([]byte, error) {
	if _, err := tpmHash(digest, h); err != nil {
		return nil, err
	}
	if err := id.refuseInQuarantine("sign"); err != nil {
		return nil, err
	}
	return id.signer.Sign(rand.Reader, digest, h)
}

// DeviceCertificate returns the device certificate chain (leaf first). It
// re-reads device.cbor so a certificate installed by `otgate identity
// install-cert` while the service runs is served at once; a file that no
// longer reads or does not match the key is logged and the last good
// certificate kept.
func (id *Identity) DeviceCertificate() [][]byte {
	id.mu.Lock()
	defer id.mu.Unlock()
	var rec deviceRecord
	err := readState(id.cfg.StateDir, DeviceFile, &rec)
	if err == nil {
		var cert *x509.Certificate
		if cert, err = x509.ParseCertificate(rec.Cert); err == nil {
			err = matchesKey(cert, id.signer.Public())
		}
	}
	switch {
	case err != nil:
		id.log.Printf("keeping the loaded device certificate: %v", err)
	case !bytes.Equal(rec.Cert, id.device.Cert):
		id.log.Printf("device certificate changed on disk: serving the new one")
		id.device = rec
	}
	return append([][]byte{id.device.Cert}, id.device.Chain...)
}

// EK returns the EK inventory: PKIX public key and certificates (DER, nil
// when absent). Empty in dev mode.
func (id *Identity) EK() (pub, certRSA, certECC []byte) {
	d := id.deviceRecord()
	return d.EKPublic, d.EKCertRSA, d.EKCertECC
}

// CSR makes a certificate request for the device key; refused in
// quarantine (it is a signature by the device key).
func (id *Identity) CSR() ([]byte, error) {
	if err := id.refuseInQuarantine("certificate request"); err != nil {
		return nil, err
	}
	d := id.deviceRecord()
	return deviceCSR(id.signer, d.Site, d.Serial, id.dev)
}

// InstallCertificate installs a certificate (PEM chain, leaf first, or one
// DER certificate) issued for the device key, typically by an enterprise
// CA from CSR. It is refused, changing nothing, unless its public key is
// the device key (ErrCertKeyMismatch) and the chain passes
// checkDeviceChain (ErrCertChain): each certificate signed by the next,
// a leaf valid now that may serve TLS and is not a CA, intermediates that
// are CAs. The root need not be in the chain.
func (id *Identity) InstallCertificate(b []byte) error {
	certs, err := parseCertChain(b)
	if err != nil {
		return fmt.Errorf("identity: install certificate: %w", err)
	}
	if err := matchesKey(certs[0], id.signer.Public()); err != nil {
		return fmt.Errorf("identity: install certificate: %w", err)
	}
	if err := checkDeviceChain(certs, id.cfg.now()); err != nil {
		return fmt.Errorf("identity: install certificate: %w", err)
	}
	id.mu.Lock()
	defer id.mu.Unlock()
	rec := id.device
	rec.Cert = certs[0].Raw
	rec.Chain = nil
	for _, c := range certs[1:] {
		rec.Chain = append(rec.Chain, c.Raw)
	}
	rec.SelfSigned = bytes.Equal(certs[0].RawIssuer, certs[0].RawSubject)
	if err := writeState(id.cfg.StateDir, DeviceFile, &rec); err != nil {
		return err
	}
	id.device = rec
	id.log.Printf("installed device certificate issued by %q, valid until %s", certs[0].Issuer.String(), certs[0].NotAfter.UTC().Format(time.RFC3339))
	return nil
}

// RenewSelfSignedCertificate replaces the device certificate (an installed
// one too) with a new self-signed end-entity certificate for the same key
// (selfSignedDeviceCert): the remedy for an identity whose certificate is
// a CA. Clients pin the key, not the certificate, so their pins stay
// valid. Refused in quarantine (it is a signature by the device key).
func (id *Identity) RenewSelfSignedCertificate() (*x509.Certificate, error) {
	if err := id.refuseInQuarantine("renew-cert"); err != nil {
		return nil, err
	}
	id.mu.Lock()
	defer id.mu.Unlock()
	rec := id.device
	old, _ := x509.ParseCertificate(rec.Cert)
	der, err := selfSignedDeviceCert(id.signer, rec.Site, rec.Serial, id.dev, id.cfg.now())
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	rec.Cert, rec.Chain, rec.SelfSigned = der, nil, true
	if err := writeState(id.cfg.StateDir, DeviceFile, &rec); err != nil {
		return nil, err
	}
	id.device = rec
	what := "a device certificate that did not parse"
	if old != nil {
		what = fmt.Sprintf("the device certificate issued by %q (serial %x)", old.Issuer.String(), old.SerialNumber)
	}
	id.log.Printf("renewed the device certificate: a self-signed end entity (serial %x, valid until %s) replaces %s",
		cert.SerialNumber, cert.NotAfter.UTC().Format(time.RFC3339), what)
	return cert, nil
}

func (id *Identity) needDataKey() error {
	if id.quarantine != nil {
		return fmt.Errorf("identity: %w: %s; what to do: %s", ErrQuarantine, id.quarantine.Reason, id.quarantine.Remedy)
	}
	return nil
}

// refuseInQuarantine is the error for an operation that vouches for the
// gate (op names it), or nil outside quarantine. The device key is
// loaded in quarantine, but an image or configuration the data key was
// not sealed to must not sign as this gate, present its certificate or
// certify its services.
func (id *Identity) refuseInQuarantine(op string) error {
	if id.quarantine != nil {
		return fmt.Errorf("identity: %s refused: %w (the gate does not vouch for an image or configuration it was not sealed to): %s; what to do: %s",
			op, ErrQuarantine, id.quarantine.Reason, id.quarantine.Remedy)
	}
	return nil
}

// SealSecret stores plaintext as owner/name, encrypted under the data key.
// A secret over MaxSecretSize, or a new one when owner already holds
// MaxSecretsPerCaller, is refused (ErrSecretLimit) and nothing is written.
func (id *Identity) SealSecret(owner, name string, plaintext []byte) error {
	if err := id.needDataKey(); err != nil {
		return err
	}
	// One seal at a time: two new names must not both pass the count.
	id.sealMu.Lock()
	defer id.sealMu.Unlock()
	if err := checkSecretLimits(id.cfg.StateDir, owner, name, len(plaintext)); err != nil {
		return err
	}
	return sealSecret(id.cfg.StateDir, id.dataKey, owner, name, plaintext)
}

// UnsealSecret returns the secret owner/name.
func (id *Identity) UnsealSecret(owner, name string) ([]byte, error) {
	if err := id.needDataKey(); err != nil {
		return nil, err
	}
	return openSecret(id.cfg.StateDir, id.dataKey, owner, name)
}

// IssueWorkloadCertificate certifies the key in csrDER for service, valid
// for ttl (at most one hour). It returns the leaf and the workload CA
// certificate (the trust anchor for the gate's services).
func (id *Identity) IssueWorkloadCertificate(service string, csrDER []byte, ttl time.Duration) (leaf, ca []byte, err error) {
	if err := id.needDataKey(); err != nil {
		return nil, nil, err
	}
	id.mu.Lock()
	defer id.mu.Unlock()
	leaf, err = issueWorkloadCert(id.wcaKey, id.wcaCert, csrDER, id.device.Site, id.device.Serial, service, ttl, id.dev, id.cfg.now())
	if err != nil {
		return nil, nil, err
	}
	return leaf, id.wcaCert.Raw, nil
}
