package identity

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/otgate/otgate/internal/atomicfile"
	"github.com/otgate/otgate/services/identity/bootmeasure"
)

// SealNextBoot is the identity's half of an authorized policy change (see
// "Authorized configuration changes" in the package documentation). It
// seals the data key this boot unsealed to the PCR values the next boot
// will have if init measures digest: the board PCRs as they are now and
// MeasuredPCR = bootmeasure.PCRAfterBoot(digest). The sealed object's
// authPolicy is computed in software with the same PolicyPCR calculation
// the ordinary seal uses, so the TPM itself enforces it. The result is
// written durably to NextSealFile (replacing an earlier pending one); the
// current SealFile is kept, so a boot that still measures the old
// configuration unseals as before.
//
// It is refused in quarantine (there is no data key to seal). In dev mode
// the data key is not sealed and it does nothing.
func (id *Identity) SealNextBoot(digest [32]byte) error {
	if err := id.needDataKey(); err != nil {
		return err
	}
	if id.dev {
		id.log.Printf("dev mode: the data key is not sealed; nothing to seal for the next boot")
		return nil
	}
	id.mu.Lock()
	defer id.mu.Unlock()
	dir := id.cfg.StateDir
	if id.unpromoted != nil {
		// This boot's data key is in NextSealFile alone: promote it before
		// a new slot takes that file, or refuse (an apply cut before its
		// policy is stored would leave this configuration no slot).
		if err := id.promote(id.unpromoted); err != nil {
			return fmt.Errorf("identity: seal for the next boot refused: this boot unsealed from %s, which could not be made %s (%w); "+
				"replacing it would leave the running configuration no sealed data key", NextSealFile, SealFile, err)
		}
		id.unpromoted = nil
	}
	var cur sealRecord
	if err := readState(dir, SealFile, &cur); err != nil {
		return err
	}
	values, err := readPCRs(id.tpm, cur.PCRs)
	if err != nil {
		return err
	}
	measured := false
	for i, p := range cur.PCRs {
		if p == MeasuredPCR {
			v := bootmeasure.PCRAfterBoot(digest)
			values[i] = v[:]
			measured = true
		}
	}
	if !measured {
		return corrupt(filepath.Join(dir, SealFile), fmt.Sprintf("PCR list %v lacks the boot measurement PCR %d", cur.PCRs, MeasuredPCR), nil)
	}
	rec, err := sealDataKeyTo(id.tpm, nil, cur.PCRs, values, id.dataKey.b)
	if err != nil {
		return err
	}
	rec.NextBootDigest = digest[:]
	b, err := encMode.Marshal(rec)
	if err != nil {
		return fmt.Errorf("identity: encode %s: %w", NextSealFile, err)
	}
	if err := atomicfile.WriteHooked(filepath.Join(dir, NextSealFile), b, 0o600, id.cfg.StateWriteHook); err != nil {
		return fmt.Errorf("identity: seal for the next boot: %w", err)
	}
	id.log.Printf("data key sealed for the next boot (measurement %x, PCRs %v) in %s; the current seal is kept", digest[:8], cur.PCRs, NextSealFile)
	return nil
}

// unsealSlots unseals the data key from SealFile (cur) or, when the PCRs
// no longer match it, from the next-boot slot NextSealFile. A next-boot
// slot that unseals is promoted: it becomes SealFile (atomically) and
// NextSealFile is removed. The returned *PCRMismatchError is the current
// slot's (what the quarantine report shows).
func (id *Identity) unsealSlots(parent *srkKey, cur *sealRecord, curPath string) ([]byte, error) {
	dir := id.cfg.StateDir
	nextPath := filepath.Join(dir, NextSealFile)
	dk, err := unsealDataKey(id.tpm, parent, cur, curPath)
	if err == nil {
		id.keepOrDropNext(cur, nextPath)
		return dk, nil
	}
	var pe *PCRMismatchError
	if !errors.As(err, &pe) {
		return nil, err
	}
	var next sealRecord
	nerr := readState(dir, NextSealFile, &next)
	switch {
	case errors.Is(nerr, ErrStateMissing):
		return nil, err
	case nerr != nil:
		id.log.Printf("next-boot slot unusable: %v", nerr)
		return nil, err
	case next.Mode != ModeTPM:
		id.log.Printf("next-boot slot %s: mode %q, want %q; ignored", nextPath, next.Mode, ModeTPM)
		return nil, err
	}
	ndk, nerr := unsealDataKey(id.tpm, parent, &next, nextPath)
	if nerr != nil {
		id.log.Printf("next-boot slot %s does not unseal either: %v", nextPath, nerr)
		return nil, err
	}
	next.NextBootDigest = nil
	if werr := id.promote(&next); werr != nil {
		// The key is unsealed; the slot stays where it is and the next
		// boot promotes it again. SealNextBoot promotes it first.
		id.log.Printf("authorized configuration change: unsealed from %s but could not promote it: %v", nextPath, werr)
		id.unpromoted = &next
		return ndk, nil
	}
	id.log.Printf("authorized configuration change: the data key unsealed from the next-boot slot, promoted to %s", curPath)
	return ndk, nil
}

// promote makes next, the next-boot slot this boot unsealed from, the
// current slot SealFile and removes NextSealFile.
func (id *Identity) promote(next *sealRecord) error {
	dir := id.cfg.StateDir
	if err := atomicfile.WriteHooked(filepath.Join(dir, SealFile), mustEncode(next), 0o600, id.cfg.StateWriteHook); err != nil {
		return err
	}
	id.removeNext(filepath.Join(dir, NextSealFile))
	return nil
}

// keepOrDropNext runs after the current slot unsealed. A next-boot slot
// equal to the current one is the leftover of a promotion cut short and is
// removed. Any other is kept: it belongs to a policy applied on this boot
// (the service may have restarted since) that the next boot will measure;
// the next authorized apply replaces it.
func (id *Identity) keepOrDropNext(cur *sealRecord, nextPath string) {
	var next sealRecord
	err := readState(filepath.Dir(nextPath), filepath.Base(nextPath), &next)
	switch {
	case errors.Is(err, ErrStateMissing):
	case err != nil:
		id.log.Printf("next-boot slot unusable (the current seal unsealed; nothing lost): %v", err)
	case bytes.Equal(next.Public, cur.Public) && bytes.Equal(next.Private, cur.Private):
		id.removeNext(nextPath)
	default:
		id.log.Printf("a next-boot slot is pending in %s (sealed for boot measurement %x); kept for the next boot", nextPath, next.NextBootDigest)
	}
}

func (id *Identity) removeNext(path string) {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		id.log.Printf("remove %s: %v", path, err)
		return
	}
	if err := atomicfile.SyncDir(filepath.Dir(path)); err != nil {
		id.log.Printf("%v", err)
	}
}

func mustEncode(v any) []byte {
	b, err := encMode.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("identity: encode %T: %v", v, err))
	}
	return b
}
