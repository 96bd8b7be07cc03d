package identity

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/otgate/otgate/internal/atomicfile"
)

// Reseal is the break-glass way out of quarantine on an image the operator
// has verified: it keeps the device key, serial and certificates (the gate
// stays the same device), seals a NEW data key to the current PCR values,
// makes a new workload CA, and moves the secrets sealed under the old data
// key (unreadable now) to secrets.unsealable-<time>. Services must then
// re-create their secrets (user store, TOTP enrolment). It returns the
// directory the old secrets were moved to ("" if there were none).
//
// It refuses when the data key still unseals: then there is nothing to
// recover and resealing would only destroy secrets.
func Reseal(cfg Config) (string, error) {
	if cfg.DevMode {
		return "", errors.New("identity: reseal: dev mode has no sealed data key")
	}
	cfg.Create = false
	id, err := Open(cfg)
	if err != nil {
		return "", fmt.Errorf("identity: reseal: %w", err)
	}
	defer id.Close()
	if id.quarantine == nil {
		return "", errors.New("identity: reseal: the data key unseals on this boot: not in quarantine, nothing to do")
	}
	var old sealRecord
	if err := readState(cfg.StateDir, SealFile, &old); err != nil {
		return "", err
	}
	dk := make([]byte, dataKeySize)
	if _, err := rand.Read(dk); err != nil {
		return "", err
	}
	rec, err := sealDataKey(id.tpm, nil, old.PCRs, dk)
	if err != nil {
		return "", err
	}
	secrets := filepath.Join(cfg.StateDir, SecretsDir)
	moved := ""
	if _, err := os.Stat(secrets); err == nil {
		moved = filepath.Join(cfg.StateDir, SecretsDir+".unsealable-"+cfg.now().UTC().Format("20060102T150405Z"))
		if err := os.Rename(secrets, moved); err != nil {
			return "", fmt.Errorf("identity: reseal: move old secrets aside: %w", err)
		}
	}
	// The new workload CA's key is sealed under the new data key; seal.cbor
	// is written last, so a power cut before it leaves the old seal (still
	// in quarantine, reseal can run again).
	if err := writeWorkloadCA(cfg.StateDir, id.signer, id.device.Cert, id.device.Site, id.device.Serial, false, &dataKey{b: dk}, cfg.now()); err != nil {
		return moved, err
	}
	// A next-boot slot holds the old data key: useless after the reseal,
	// and harmful if left behind by a cut after seal.cbor (a later boot
	// measuring its configuration would promote the old key over the new
	// one, and no secret would decrypt). Removed (durably) first: a cut
	// before seal.cbor is written leaves quarantine, and reseal again.
	nextPath := filepath.Join(cfg.StateDir, NextSealFile)
	if err := os.Remove(nextPath); err != nil && !errors.Is(err, os.ErrNotExist) {
		return moved, fmt.Errorf("identity: reseal: remove the next-boot slot of the old data key: %w", err)
	}
	if err := syncDir(cfg.StateDir); err != nil {
		return moved, err
	}
	if err := atomicfile.WriteHooked(filepath.Join(cfg.StateDir, SealFile), mustEncode(rec), 0o600, cfg.StateWriteHook); err != nil {
		return moved, fmt.Errorf("identity: reseal: %w", err)
	}
	id.log.Printf("RESEAL: new data key sealed to PCRs %v on the current boot; old secrets moved to %s", rec.PCRs, moved)
	return moved, nil
}
