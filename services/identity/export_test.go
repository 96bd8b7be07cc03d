package identity

import (
	"errors"
	"testing"

	"github.com/google/go-tpm/tpm2"
)

// TestPrivateKeyCannotBeExported shows the TPM refusing to hand out the
// device key: TPM2_Duplicate is refused (with password and with policy
// authorisation), and the wrapped private blob is useless on another TPM.
func TestPrivateKeyCannotBeExported(t *testing.T) {
	_, opener := startTPM(t)
	cfg := testConfig(t, opener)
	id, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer id.Close()
	key := id.signer.(*tpmSigner).key

	// The TPM reports the loaded key as non-duplicable, signing only.
	rp, err := tpm2.ReadPublic{ObjectHandle: key.Handle}.Execute(id.tpm)
	if err != nil {
		t.Fatal(err)
	}
	area, err := rp.OutPublic.Contents()
	if err != nil {
		t.Fatal(err)
	}
	if a := area.ObjectAttributes; !a.FixedTPM || !a.FixedParent || !a.SensitiveDataOrigin || a.Decrypt || !a.SignEncrypt {
		t.Fatalf("device key attributes in the TPM: %+v", a)
	}

	// Duplicate needs the DUP role, i.e. a policy session; try a password
	// first, then a policy session that asserts the Duplicate command.
	_, err = tpm2.Duplicate{
		ObjectHandle:    tpm2.AuthHandle{Handle: key.Handle, Name: key.Name, Auth: tpm2.PasswordAuth(nil)},
		NewParentHandle: tpm2.TPMRHNull,
		Symmetric:       tpm2.TPMTSymDef{Algorithm: tpm2.TPMAlgNull},
	}.Execute(id.tpm)
	if err == nil {
		t.Fatal("TPM2_Duplicate with password auth succeeded")
	}
	var rc tpm2.TPMRC
	if !errors.As(err, &rc) {
		t.Fatalf("TPM2_Duplicate failed without a TPM response code: %v", err)
	}
	t.Logf("TPM2_Duplicate (password): %v", err)

	sess, closeSess, err := tpm2.PolicySession(id.tpm, tpm2.TPMAlgSHA256, 16)
	if err != nil {
		t.Fatal(err)
	}
	defer closeSess()
	if _, err := (tpm2.PolicyCommandCode{PolicySession: sess.Handle(), Code: tpm2.TPMCCDuplicate}).Execute(id.tpm); err != nil {
		t.Fatal(err)
	}
	_, err = tpm2.Duplicate{
		ObjectHandle:    tpm2.AuthHandle{Handle: key.Handle, Name: key.Name, Auth: sess},
		NewParentHandle: tpm2.TPMRHNull,
		Symmetric:       tpm2.TPMTSymDef{Algorithm: tpm2.TPMAlgNull},
	}.Execute(id.tpm)
	if err == nil {
		t.Fatal("TPM2_Duplicate with a policy session succeeded")
	}
	if !errors.As(err, &rc) {
		t.Fatalf("TPM2_Duplicate failed without a TPM response code: %v", err)
	}
	t.Logf("TPM2_Duplicate (policy session): %v", err)

	// The blobs in key.cbor do not load in another TPM.
	var rec keyRecord
	if err := readState(cfg.StateDir, KeyFile, &rec); err != nil {
		t.Fatal(err)
	}
	_, other := startTPM(t)
	ot, err := other.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer ot.Close()
	if h, _, err := loadObject(ot, nil, rec.Public, rec.Private); err == nil {
		flush(ot, h.Handle)
		t.Fatal("the device key blob loaded into another TPM")
	} else {
		t.Logf("another TPM refuses the blob: %v", err)
	}
}
