package identity

import (
	"errors"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// TestPrivateKeyCannotBeExported checks the device key as the TPM holds
// it: non-duplicable, signing only, and with an empty authPolicy, so the
// DUP role TPM2_Duplicate needs (a policy session) can never be satisfied;
// and its wrapped private blob does not load into another TPM.
// TestDuplicateRefusedForFixedParent shows that fixedParent alone stops a
// duplication that is authorized.
func TestPrivateKeyCannotBeExported(t *testing.T) {
	_, opener := startTPM(t)
	cfg := testConfig(t, opener)
	id, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer id.Close()
	key := id.signer.(*tpmSigner).key

	area := readPublic(t, id.tpm, key.Handle)
	if a := area.ObjectAttributes; !a.FixedTPM || !a.FixedParent || !a.SensitiveDataOrigin || a.Decrypt || !a.SignEncrypt || !a.NoDA {
		t.Fatalf("device key attributes in the TPM: %+v", a)
	}
	if len(area.AuthPolicy.Buffer) != 0 {
		t.Fatalf("device key has an authPolicy %x: the DUP role could be satisfied", area.AuthPolicy.Buffer)
	}
	// A policy session asserting Duplicate does not satisfy the empty
	// policy: refused at authorization already.
	err = duplicateWithPolicy(t, id.tpm, key)
	if !errors.Is(err, tpm2.TPMRCPolicyFail) {
		t.Fatalf("TPM2_Duplicate of the device key: %v, want TPM_RC_POLICY_FAIL", err)
	}

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

// duplicateTemplate is deviceKeyTemplate, attributes as they are, with an
// authPolicy that grants the DUP role (PolicyCommandCode(TPM_CC_Duplicate));
// control clears fixedTPM and fixedParent.
func duplicateTemplate(t *testing.T, control bool) tpm2.TPMTPublic {
	t.Helper()
	calc, err := tpm2.NewPolicyCalculator(tpm2.TPMAlgSHA256)
	if err != nil {
		t.Fatal(err)
	}
	if err := (tpm2.PolicyCommandCode{Code: tpm2.TPMCCDuplicate}).Update(calc); err != nil {
		t.Fatal(err)
	}
	tmpl := deviceKeyTemplate
	tmpl.AuthPolicy = tpm2.TPM2BDigest{Buffer: calc.Hash().Digest}
	if control {
		tmpl.ObjectAttributes.FixedTPM = false
		tmpl.ObjectAttributes.FixedParent = false
	}
	return tmpl
}

// duplicateWithPolicy runs TPM2_Duplicate on key (to no new parent, no
// inner wrapper) in a policy session that asserts the Duplicate command.
func duplicateWithPolicy(t *testing.T, tpm transport.TPM, key tpm2.NamedHandle) error {
	t.Helper()
	sess, closeSess, err := tpm2.PolicySession(tpm, tpm2.TPMAlgSHA256, 16)
	if err != nil {
		t.Fatal(err)
	}
	defer closeSess()
	if _, err := (tpm2.PolicyCommandCode{PolicySession: sess.Handle(), Code: tpm2.TPMCCDuplicate}).Execute(tpm); err != nil {
		t.Fatal(err)
	}
	_, err = tpm2.Duplicate{
		ObjectHandle:    tpm2.AuthHandle{Handle: key.Handle, Name: key.Name, Auth: sess},
		NewParentHandle: tpm2.TPMRHNull,
		Symmetric:       tpm2.TPMTSymDef{Algorithm: tpm2.TPMAlgNull},
	}.Execute(tpm)
	return err
}

// A key made from the device key template, but whose authPolicy does
// grant the DUP role, is still refused with TPM_RC_ATTRIBUTES: the refusal
// comes from fixedParent, not from the authorization. The control key,
// the same without fixedTPM/fixedParent, does duplicate under the same
// session: the test can tell a duplicable key from one that is not.
func TestDuplicateRefusedForFixedParent(t *testing.T) {
	_, opener := startTPM(t)
	tpm, err := opener.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer tpm.Close()
	parent, err := srk(tpm)
	if err != nil {
		t.Fatal(err)
	}
	defer flush(tpm, parent.Handle)

	for _, tc := range []struct {
		name    string
		control bool
	}{{"device template + DUP policy", false}, {"control: fixedTPM/fixedParent clear", true}} {
		t.Run(tc.name, func(t *testing.T) {
			rsp, err := tpm2.CreateLoaded{
				ParentHandle: tpm2.AuthHandle{Handle: parent.Handle, Name: parent.Name, Auth: tpm2.PasswordAuth(nil)},
				InPublic:     tpm2.New2BTemplate(ptr(duplicateTemplate(t, tc.control))),
			}.Execute(tpm)
			if err != nil {
				t.Fatal(err)
			}
			defer flush(tpm, rsp.ObjectHandle)
			key := tpm2.NamedHandle{Handle: rsp.ObjectHandle, Name: rsp.Name}
			err = duplicateWithPolicy(t, tpm, key)
			if !tc.control {
				if !errors.Is(err, tpm2.TPMRCAttributes) {
					t.Fatalf("TPM2_Duplicate of a fixedParent key with the DUP role: %v, want TPM_RC_ATTRIBUTES", err)
				}
				t.Logf("refused: %v", err)
				return
			}
			if err != nil {
				t.Fatalf("control key (duplicable) did not duplicate: %v", err)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// readPublic reads an object's public area back from the TPM.
func readPublic(t *testing.T, tpm transport.TPM, h tpm2.TPMHandle) *tpm2.TPMTPublic {
	t.Helper()
	rp, err := tpm2.ReadPublic{ObjectHandle: h}.Execute(tpm)
	if err != nil {
		t.Fatal(err)
	}
	area, err := rp.OutPublic.Contents()
	if err != nil {
		t.Fatal(err)
	}
	return area
}
