package identity

import (
	"crypto/sha256"
	"testing"

	"github.com/google/go-tpm/tpm2"
)

// Every object the identity keeps in or loads into the TPM carries noDA
// as the TPM itself reports it (TPM2_ReadPublic), so wrong auth values can
// never drive the TPM into dictionary-attack lockout and brick the gate;
// the device key and the sealed data keys (current and next-boot slot)
// are also fixedTPM|fixedParent, and the sealed objects are policy-only
// (userWithAuth clear) with a non-empty authPolicy.
func TestTPMObjectsAreNoDAAndFixed(t *testing.T) {
	sw, opener := startTPM(t)
	cfg := testConfig(t, opener)
	id := boot(t, cfg, sw, "image-A")
	defer id.Close()
	if err := id.SealNextBoot(sha256.Sum256([]byte("config-B"))); err != nil {
		t.Fatal(err)
	}

	// The device key, loaded by Open.
	dk := readPublic(t, id.tpm, id.signer.(*tpmSigner).key.Handle)
	if a := dk.ObjectAttributes; !a.NoDA || !a.FixedTPM || !a.FixedParent {
		t.Errorf("device key: noDA %v fixedTPM %v fixedParent %v, want all set", a.NoDA, a.FixedTPM, a.FixedParent)
	}

	// The persistent SRK the identity made.
	var key keyRecord
	if err := readState(cfg.StateDir, KeyFile, &key); err != nil {
		t.Fatal(err)
	}
	parent, ok := persistentSRK(id.tpm, key.SRKName)
	if !ok {
		t.Fatalf("no persistent SRK at %#x named %x", uint32(SRKHandle), key.SRKName)
	}
	if a := readPublic(t, id.tpm, SRKHandle).ObjectAttributes; !a.NoDA || !a.FixedTPM || !a.FixedParent {
		t.Errorf("SRK: noDA %v fixedTPM %v fixedParent %v, want all set", a.NoDA, a.FixedTPM, a.FixedParent)
	}

	// The sealed data key in both slots, loaded from their blobs.
	for _, f := range []string{SealFile, NextSealFile} {
		var rec sealRecord
		if err := readState(cfg.StateDir, f, &rec); err != nil {
			t.Fatal(err)
		}
		h, _, err := loadObject(id.tpm, &parent, rec.Public, rec.Private)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		area := readPublic(t, id.tpm, h.Handle)
		flush(id.tpm, h.Handle)
		a := area.ObjectAttributes
		if !a.NoDA || !a.FixedTPM || !a.FixedParent {
			t.Errorf("%s: noDA %v fixedTPM %v fixedParent %v, want all set", f, a.NoDA, a.FixedTPM, a.FixedParent)
		}
		if a.UserWithAuth || len(area.AuthPolicy.Buffer) == 0 {
			t.Errorf("%s: userWithAuth %v, authPolicy %x: want policy-only", f, a.UserWithAuth, area.AuthPolicy.Buffer)
		}
		if area.Type != tpm2.TPMAlgKeyedHash {
			t.Errorf("%s: type %v, want a keyed-hash (sealed data) object", f, area.Type)
		}
	}
}
