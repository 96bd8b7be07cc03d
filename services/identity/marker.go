package identity

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"golang.org/x/sys/unix"
)

// MarkerNVIndex is the TPM NV index (owner range 0x01000000-0x013fffff)
// where a TPM identity records itself when it is created or reset: its
// serial, the fingerprint of its device key and when. With the persistent
// SRK it is how a start that finds no state directory knows the TPM held
// an identity before (/perm lost, replaced or not mounted) instead of
// taking it for a first boot. Written only when an identity is created
// (first boot, reset), never on an ordinary start.
const MarkerNVIndex = tpm2.TPMHandle(0x01004f54)

// ErrEarlierIdentity: the state directory holds no identity but the TPM
// shows one was created on it before; a new one is made only by
// `otgate identity reset`.
var ErrEarlierIdentity = errors.New("the TPM shows an earlier device identity")

// ErrVolatileState: the state directory is on a tmpfs (or ramfs), so a
// TPM identity made there would be lost at power-off.
var ErrVolatileState = errors.New("identity state directory is not persistent")

// markerRecord is the content of MarkerNVIndex.
type markerRecord struct {
	Version        int    `cbor:"1,keyasint"`
	Serial         string `cbor:"2,keyasint"`
	KeyFingerprint string `cbor:"3,keyasint"`
	CreatedAt      int64  `cbor:"4,keyasint"` // unix seconds
}

func (r *markerRecord) version() int { return r.Version }

func (r *markerRecord) String() string {
	return fmt.Sprintf("serial %s, device key %s, created %s", r.Serial, r.KeyFingerprint,
		time.Unix(r.CreatedAt, 0).UTC().Format(time.RFC3339))
}

// keyFingerprint names a public key: SHA-256 over its PKIX DER.
func keyFingerprint(pub crypto.PublicKey) string {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "unknown"
	}
	sum := sha256.Sum256(der)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// readMarker reads MarkerNVIndex: defined reports whether the index
// exists; rec is nil (and err says why) when it exists but does not hold
// a marker (never written: a power cut between define and write).
func readMarker(t transport.TPM) (rec *markerRecord, defined bool, err error) {
	b, defined, err := readNV(t, MarkerNVIndex)
	switch {
	case !defined:
		return nil, false, err
	case err != nil:
		// The evidence names the index: the TPM's own words.
		return nil, true, errors.Unwrap(err)
	case len(b) == 0 || len(b) > 512:
		return nil, true, fmt.Errorf("%d bytes", len(b))
	}
	var m markerRecord
	if err := decMode.Unmarshal(b, &m); err != nil {
		return nil, true, err
	}
	return &m, true, nil
}

// writeMarker (re)defines MarkerNVIndex with rec: owner-written, readable
// with its empty auth, noDA.
func writeMarker(t transport.TPM, rec *markerRecord) error {
	b, err := encMode.Marshal(rec)
	if err != nil {
		return err
	}
	owner := tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)}
	if pub, err := (tpm2.NVReadPublic{NVIndex: MarkerNVIndex}).Execute(t); err == nil {
		if _, err := (tpm2.NVUndefineSpace{AuthHandle: owner,
			NVIndex: tpm2.NamedHandle{Handle: MarkerNVIndex, Name: pub.NVName}}).Execute(t); err != nil {
			return fmt.Errorf("remove the old marker at NV index %#x: %w", uint32(MarkerNVIndex), err)
		}
	}
	nvPub := tpm2.TPMSNVPublic{
		NVIndex: MarkerNVIndex,
		NameAlg: tpm2.TPMAlgSHA256,
		Attributes: tpm2.TPMANV{
			OwnerWrite: true, OwnerRead: true, AuthRead: true, NoDA: true,
			NT: tpm2.TPMNTOrdinary,
		},
		DataSize: uint16(len(b)),
	}
	if _, err := (tpm2.NVDefineSpace{AuthHandle: owner, PublicInfo: tpm2.New2B(nvPub)}).Execute(t); err != nil {
		return fmt.Errorf("define NV index %#x: %w", uint32(MarkerNVIndex), err)
	}
	pub, err := tpm2.NVReadPublic{NVIndex: MarkerNVIndex}.Execute(t)
	if err != nil {
		return fmt.Errorf("read NV index %#x public area: %w", uint32(MarkerNVIndex), err)
	}
	if _, err := (tpm2.NVWrite{AuthHandle: owner, NVIndex: tpm2.NamedHandle{Handle: MarkerNVIndex, Name: pub.NVName},
		Data: tpm2.TPM2BMaxNVBuffer{Buffer: b}}).Execute(t); err != nil {
		return fmt.Errorf("write NV index %#x: %w", uint32(MarkerNVIndex), err)
	}
	return nil
}

// earlierIdentity says what the TPM shows of an identity created on it
// before ("" when nothing, on a TPM no identity ran on): the marker at
// MarkerNVIndex, or the standard SRK persistent at SRKHandle (which an
// identity keeps there; one made before the marker existed has only
// that). A different key at SRKHandle is someone else's and no evidence.
// marker is the marker when it read.
func earlierIdentity(t transport.TPM) (evidence string, marker *markerRecord, err error) {
	m, defined, merr := readMarker(t)
	switch {
	case m != nil:
		return fmt.Sprintf("its identity marker at NV index %#x records %s", uint32(MarkerNVIndex), m), m, nil
	case defined:
		return fmt.Sprintf("its identity marker NV index %#x is defined but does not read (%v)", uint32(MarkerNVIndex), merr), nil, nil
	case merr != nil:
		return "", nil, merr
	}
	rp, err := tpm2.ReadPublic{ObjectHandle: SRKHandle}.Execute(t)
	if errors.Is(err, tpm2.TPMRCHandle) {
		return "", nil, nil
	}
	if err != nil {
		return "", nil, fmt.Errorf("identity: read the key at %#x: %w", uint32(SRKHandle), err)
	}
	p, err := srk(t)
	if err != nil {
		return "", nil, err
	}
	flush(t, p.Handle)
	if !bytes.Equal(rp.Name.Buffer, p.Name.Buffer) {
		return "", nil, nil
	}
	return fmt.Sprintf("the storage root key an identity keeps persistent is at %#x "+
		"(no otgate marker at NV index %#x: an identity made before markers existed; systemd and Windows keep the same standard key there, "+
		"so if this TPM only ever served another operating system, a reset loses nothing)", uint32(SRKHandle), uint32(MarkerNVIndex)), nil, nil
}

// refuseEarlierIdentity is Open's check before a first-boot create: nil
// when the TPM shows no earlier identity.
func refuseEarlierIdentity(cfg Config, t transport.TPM) error {
	evidence, m, err := earlierIdentity(t)
	if err != nil || evidence == "" {
		return err
	}
	same := ""
	if m != nil {
		same = fmt.Sprintf(" (it would take the same SPIFFE ID %s, the serial derives from the EK, with another key: another device under this gate's name)",
			DeviceURI(cfg.Site, m.Serial))
	}
	return fmt.Errorf("identity: %w: %s holds no identity, but %s; refusing to create a new identity%s. "+
		"/perm was lost, replaced or not mounted: restore %s from a backup (the same device comes back), "+
		"or run `otgate identity reset -yes` to create a NEW identity on purpose (a different device; the reset is logged)",
		ErrEarlierIdentity, cfg.StateDir, evidence, same, cfg.StateDir)
}

// volatileFS names the file system type of dir (or its nearest existing
// ancestor) when it does not survive a power-off (tmpfs, ramfs), or "".
func volatileFS(dir string) (string, error) {
	for d := dir; ; d = filepath.Dir(d) {
		var st unix.Statfs_t
		err := unix.Statfs(d, &st)
		if errors.Is(err, os.ErrNotExist) && d != filepath.Dir(d) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("identity: statfs %s: %w", d, err)
		}
		switch int64(st.Type) {
		case unix.TMPFS_MAGIC:
			return "tmpfs", nil
		case unix.RAMFS_MAGIC:
			return "ramfs", nil
		}
		return "", nil
	}
}

// checkPersistent refuses to create a TPM identity on a volatile state
// directory unless allowed (cfg.RequirePersistentState clear) or in dev
// mode.
func checkPersistent(cfg Config) error {
	if cfg.DevMode || !cfg.RequirePersistentState {
		return nil
	}
	fs, err := volatileFS(cfg.StateDir)
	if err != nil || fs == "" {
		return err
	}
	return fmt.Errorf("identity: %w: refusing to create a TPM device identity in %s: it is on a %s (init mounts one on /perm when the board's persistent disk is missing or unreadable), "+
		"so its key blobs and sealed data key would be lost at power-off while the TPM keeps its marker, and the next boot would refuse as for a lost /perm. "+
		"Fix the persistent disk; for a test, pass -allow-volatile-state (or run in -dev mode)", ErrVolatileState, cfg.StateDir, fs)
}
