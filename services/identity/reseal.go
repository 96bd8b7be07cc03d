package identity

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/otgate/otgate/internal/atomicfile"
)

// ResealPendingDir is where a reseal stages the new workload CA (its
// certificate and its key sealed under the new data key) and the new
// seal it belongs to, until the new seal.cbor is in place.
const ResealPendingDir = "reseal.pending"

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
//
// The new seal.cbor is the commit: the new workload CA is staged in
// ResealPendingDir before it, and the old secrets and workload CA are
// replaced only after it. A power cut before the commit leaves the
// identity as it was (the image it was sealed to still boots, secrets and
// all; the next start removes the staging), one after it leaves a
// staging that the next start completes (finishReseal).
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
	dir := cfg.StateDir
	var old sealRecord
	if err := readState(dir, SealFile, &old); err != nil {
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
	// Stage the new workload CA, its key sealed under the new data key,
	// with the seal it belongs to: built in a temporary directory and
	// renamed into place whole (Open removed any earlier staging).
	pending := filepath.Join(dir, ResealPendingDir)
	tmp, err := os.MkdirTemp(dir, "."+ResealPendingDir+".new-*")
	if err != nil {
		return "", fmt.Errorf("identity: reseal: %w", err)
	}
	defer os.RemoveAll(tmp) // gone after the rename
	if err := writeWorkloadCA(tmp, id.device.Site, id.device.Serial, false, &dataKey{b: dk}, cfg.now()); err != nil {
		return "", err
	}
	if err := writeState(tmp, SealFile, rec); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, pending); err != nil {
		return "", fmt.Errorf("identity: reseal: stage the new workload CA: %w", err)
	}
	if err := syncDir(dir); err != nil {
		return "", err
	}
	// A next-boot slot holds the old data key: useless after the reseal,
	// and harmful if left behind by a cut after seal.cbor (a later boot
	// measuring its configuration would promote the old key over the new
	// one, and no secret would decrypt). Removed (durably) first: a cut
	// before seal.cbor is written leaves quarantine, and reseal again.
	nextPath := filepath.Join(dir, NextSealFile)
	if err := os.Remove(nextPath); err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("identity: reseal: remove the next-boot slot of the old data key: %w", err)
	}
	if err := syncDir(dir); err != nil {
		return "", err
	}
	// The commit.
	if err := atomicfile.WriteHooked(filepath.Join(dir, SealFile), mustEncode(rec), 0o600, cfg.StateWriteHook); err != nil {
		return "", fmt.Errorf("identity: reseal: %w", err)
	}
	moved, err := finishReseal(cfg)
	if err != nil {
		return moved, fmt.Errorf("identity: reseal: the new data key is sealed, but %w (the next start of the identity completes it)", err)
	}
	id.log.Printf("RESEAL: new data key sealed to PCRs %v on the current boot; old secrets moved to %s", rec.PCRs, moved)
	return moved, nil
}

// resolveResealPending runs at every start, before the data key is
// unsealed: a ResealPendingDir left by a reseal cut short is completed
// when seal.cbor (cur) is the seal it was staged for (the cut came after
// the commit), and removed otherwise (before it: the identity is as it
// was). It says what it did ("" when there was no staging).
func resolveResealPending(cfg Config, cur *sealRecord) (string, error) {
	pending := filepath.Join(cfg.StateDir, ResealPendingDir)
	if _, err := os.Stat(pending); errors.Is(err, os.ErrNotExist) {
		return "", nil
	} else if err != nil {
		return "", fmt.Errorf("identity: %w", err)
	}
	var staged sealRecord
	serr := readState(pending, SealFile, &staged)
	if serr == nil && bytes.Equal(staged.Public, cur.Public) && bytes.Equal(staged.Private, cur.Private) {
		moved, err := finishReseal(cfg)
		if err != nil {
			return "", fmt.Errorf("identity: complete the reseal cut short: %w", err)
		}
		return "a reseal cut short after its new seal was in place is completed; old secrets moved to " + orUnknown(moved), nil
	}
	// Not committed (or its seal never reached the staging, which is
	// renamed into place whole): the identity is as before the reseal.
	if err := os.RemoveAll(pending); err != nil {
		return "", fmt.Errorf("identity: remove the staging of a reseal cut short: %w", err)
	}
	if err := syncDir(cfg.StateDir); err != nil {
		return "", err
	}
	return "a reseal cut short before its new seal was in place left " + pending + ": removed (the identity is as before it)", nil
}

// finishReseal replaces the secrets and the workload CA by the staged
// ones once the new seal is in place: the old secrets directory goes to
// secrets.unsealable-<time>, the staged secrets and workload-ca.cbor take
// their places, and the staging is removed. Each step is durable before
// the next and is skipped when done, so a cut anywhere is completed by
// the next start. It returns where the old secrets went ("" if none were
// moved).
func finishReseal(cfg Config) (string, error) {
	dir := cfg.StateDir
	pending := filepath.Join(dir, ResealPendingDir)
	stagedSecrets := filepath.Join(pending, SecretsDir)
	secrets := filepath.Join(dir, SecretsDir)
	moved := ""
	if exists(stagedSecrets) {
		if exists(secrets) {
			moved = filepath.Join(dir, SecretsDir+".unsealable-"+cfg.now().UTC().Format("20060102T150405Z"))
			if err := os.Rename(secrets, moved); err != nil {
				return "", fmt.Errorf("move the old secrets aside: %w", err)
			}
			if err := syncDir(dir); err != nil {
				return moved, err
			}
		}
		if err := os.Rename(stagedSecrets, secrets); err != nil {
			return moved, fmt.Errorf("move the new secrets into place: %w", err)
		}
		if err := syncDir(pending); err != nil {
			return moved, err
		}
		if err := syncDir(dir); err != nil {
			return moved, err
		}
	}
	if staged := filepath.Join(pending, WorkloadCAFile); exists(staged) {
		if err := os.Rename(staged, filepath.Join(dir, WorkloadCAFile)); err != nil {
			return moved, fmt.Errorf("move the new workload CA into place: %w", err)
		}
		if err := syncDir(pending); err != nil {
			return moved, err
		}
		if err := syncDir(dir); err != nil {
			return moved, err
		}
	}
	if err := os.RemoveAll(pending); err != nil {
		return moved, fmt.Errorf("remove %s: %w", pending, err)
	}
	return moved, syncDir(dir)
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}
