package identity

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/otgate/otgate/services/identity/bootmeasure"
)

// MeasuredPCR is the PCR init extends with the digest of what it boots
// (see the package documentation for why 15).
const MeasuredPCR = bootmeasure.PCR

// ErrPCRMismatch: the PCRs differ from the values the data key was sealed
// to. The gate goes into quarantine.
var ErrPCRMismatch = errors.New("PCR values differ from those the data key was sealed to")

// PCRChange is one PCR whose value differs from sealing time.
type PCRChange struct {
	PCR      uint
	Sealed   []byte
	Current  []byte
	Measured bool // the PCR is MeasuredPCR (image and configuration)
}

// PCRMismatchError lists the PCRs that changed.
type PCRMismatchError struct {
	Changes []PCRChange
	// TPMErr is the TPM's own refusal, when the TPM was asked.
	TPMErr error
}

func (e *PCRMismatchError) Error() string {
	var parts []string
	for _, c := range e.Changes {
		what := "board PCR"
		if c.Measured {
			what = "boot measurement PCR"
		}
		parts = append(parts, fmt.Sprintf("%s %d sealed %x now %x", what, c.PCR, c.Sealed, c.Current))
	}
	msg := ErrPCRMismatch.Error()
	if len(parts) > 0 {
		msg += ": " + strings.Join(parts, "; ")
	}
	if e.TPMErr != nil {
		msg += ": TPM: " + e.TPMErr.Error()
	}
	return msg
}

func (e *PCRMismatchError) Unwrap() []error {
	if e.TPMErr == nil {
		return []error{ErrPCRMismatch}
	}
	return []error{ErrPCRMismatch, e.TPMErr}
}

// ExtendBootMeasurement extends MeasuredPCR (SHA-256 bank) with digest.
// Init calls it once, early, with the SHA-256 of what it boots, before any
// service starts (through package bootmeasure, which keeps init small).
func ExtendBootMeasurement(t transport.TPM, digest [32]byte) error {
	if err := bootmeasure.Extend(t, digest); err != nil {
		return fmt.Errorf("identity: %w", err)
	}
	return nil
}

// sealPCRs is the sorted, de-duplicated PCR list: the board's PCRs plus
// MeasuredPCR.
func sealPCRs(board []uint) ([]uint, error) {
	set := map[uint]bool{MeasuredPCR: true}
	for _, p := range board {
		if err := checkBoardPCR(p); err != nil {
			return nil, fmt.Errorf("identity: %w", err)
		}
		set[p] = true
	}
	var out []uint
	for p := range set {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out, nil
}

// checkBoardPCR refuses a PCR a seal cannot rest on: one out of range,
// or a resettable one (16 debug, 23 application), which anyone on the
// device can reset and extend to the sealed value.
func checkBoardPCR(p uint) error {
	if p > 23 {
		return fmt.Errorf("PCR %d out of range 0-23", p)
	}
	if p == 16 || p == 23 {
		return fmt.Errorf("PCR %d is resettable (debug/application PCR) and cannot bind a seal", p)
	}
	return nil
}

func selection(pcrs []uint) tpm2.TPMLPCRSelection {
	return tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{
		{Hash: tpm2.TPMAlgSHA256, PCRSelect: tpm2.PCClientCompatible.PCRs(pcrs...)},
	}}
}

// readPCRs reads the SHA-256 values of pcrs, in order.
func readPCRs(t transport.TPM, pcrs []uint) ([][]byte, error) {
	var out [][]byte
	// TPM2_PCR_Read returns at most 8 digests per call.
	for i := 0; i < len(pcrs); i += 8 {
		chunk := pcrs[i:min(i+8, len(pcrs))]
		rsp, err := tpm2.PCRRead{PCRSelectionIn: selection(chunk)}.Execute(t)
		if err != nil {
			return nil, fmt.Errorf("identity: read PCRs %v: %w", chunk, err)
		}
		if len(rsp.PCRValues.Digests) != len(chunk) {
			return nil, fmt.Errorf("identity: read PCRs %v: TPM returned %d values (SHA-256 bank not allocated?)", chunk, len(rsp.PCRValues.Digests))
		}
		for _, d := range rsp.PCRValues.Digests {
			out = append(out, bytes.Clone(d.Buffer))
		}
	}
	return out, nil
}

// pcrPolicy is the PolicyPCR digest for pcrs having values.
func pcrPolicy(pcrs []uint, values [][]byte) ([]byte, error) {
	h := sha256.New()
	for _, v := range values {
		h.Write(v)
	}
	calc, err := tpm2.NewPolicyCalculator(tpm2.TPMAlgSHA256)
	if err != nil {
		return nil, err
	}
	if err := (tpm2.PolicyPCR{PcrDigest: tpm2.TPM2BDigest{Buffer: h.Sum(nil)}, Pcrs: selection(pcrs)}).Update(calc); err != nil {
		return nil, fmt.Errorf("identity: compute PCR policy: %w", err)
	}
	return calc.Hash().Digest, nil
}

// sealDataKey seals dataKey to the current values of pcrs, under parent:
// an SRK the caller holds, or nil to create one and flush it again.
func sealDataKey(t transport.TPM, parent *srkKey, pcrs []uint, dataKey []byte) (*sealRecord, error) {
	values, err := readPCRs(t, pcrs)
	if err != nil {
		return nil, err
	}
	return sealDataKeyTo(t, parent, pcrs, values, dataKey)
}

// sealDataKeyTo seals dataKey (under parent, as sealDataKey) to values of
// pcrs, which need not be the current ones: the authPolicy is computed in software (pcrPolicy) and the
// TPM enforces it at unseal time.
func sealDataKeyTo(t transport.TPM, parent *srkKey, pcrs []uint, values [][]byte, dataKey []byte) (*sealRecord, error) {
	if len(values) != len(pcrs) {
		return nil, fmt.Errorf("identity: seal: %d PCR values for PCRs %v", len(values), pcrs)
	}
	policy, err := pcrPolicy(pcrs, values)
	if err != nil {
		return nil, err
	}
	if parent == nil {
		p, err := srk(t)
		if err != nil {
			return nil, err
		}
		defer flush(t, p.Handle)
		parent = &p
	}
	rsp, err := tpm2.Create{
		ParentHandle: tpm2.AuthHandle{Handle: parent.Handle, Name: parent.Name, Auth: tpm2.PasswordAuth(nil)},
		InSensitive: tpm2.TPM2BSensitiveCreate{Sensitive: &tpm2.TPMSSensitiveCreate{
			Data: tpm2.NewTPMUSensitiveCreate(&tpm2.TPM2BSensitiveData{Buffer: dataKey}),
		}},
		InPublic: tpm2.New2B(tpm2.TPMTPublic{
			Type:    tpm2.TPMAlgKeyedHash,
			NameAlg: tpm2.TPMAlgSHA256,
			ObjectAttributes: tpm2.TPMAObject{
				FixedTPM:    true,
				FixedParent: true,
				NoDA:        true,
				// userWithAuth clear: only the PCR policy authorises.
			},
			AuthPolicy: tpm2.TPM2BDigest{Buffer: policy},
		}),
	}.Execute(t, dataKeySession(parent, tpm2.AESEncryption(128, tpm2.EncryptIn)))
	if err != nil {
		return nil, fmt.Errorf("identity: seal data key to PCRs %v: %w", pcrs, err)
	}
	return &sealRecord{
		Version: stateVersion, Mode: ModeTPM, PCRs: pcrs, PCRValues: values,
		Public: tpm2.Marshal(rsp.OutPublic), Private: tpm2.Marshal(rsp.OutPrivate),
	}, nil
}

// unsealDataKey asks the TPM to unseal, which is what enforces the
// policy; only when it refuses are the current PCRs read, to say which
// changed. The boot's path (it unseals) is four TPM commands: load,
// start the policy session (salted with the SRK: the unsealed key comes
// back encrypted, see dataKeySession), PolicyPCR, unseal.
func unsealDataKey(t transport.TPM, parent *srkKey, rec *sealRecord, path string) ([]byte, error) {
	if len(rec.PCRs) == 0 || len(rec.PCRs) != len(rec.PCRValues) {
		return nil, corrupt(path, fmt.Sprintf("%d PCRs but %d sealed values", len(rec.PCRs), len(rec.PCRValues)), nil)
	}
	key, err := unsealTPM(t, parent, rec, path)
	if err == nil {
		return key, nil
	}
	if errors.Is(err, ErrStateCorrupt) {
		return nil, err
	}
	current, rerr := readPCRs(t, rec.PCRs)
	if rerr != nil {
		return nil, fmt.Errorf("%w (and reading the PCRs to compare: %w)", err, rerr)
	}
	var changes []PCRChange
	for i, p := range rec.PCRs {
		if !bytes.Equal(current[i], rec.PCRValues[i]) {
			changes = append(changes, PCRChange{PCR: p, Sealed: rec.PCRValues[i], Current: current[i], Measured: p == MeasuredPCR})
		}
	}
	if errors.Is(err, tpm2.TPMRCPolicyFail) || errors.Is(err, tpm2.TPMRCValue) || len(changes) > 0 {
		return nil, &PCRMismatchError{Changes: changes, TPMErr: err}
	}
	return nil, err
}

// unsealTPM loads the sealed object and unseals it in a one-use PolicyPCR
// session over the current PCR values: the TPM refuses
// (TPM_RC_POLICY_FAIL) unless they equal the ones the object's policy was
// computed from. The object's policy is first checked to be the PCR policy
// of the values recorded with it, so an unseal proves the PCRs hold
// exactly those values (no PCR read needed) and a record whose values were
// edited is refused as corrupt.
func unsealTPM(t transport.TPM, parent *srkKey, rec *sealRecord, path string) ([]byte, error) {
	if parent == nil {
		p, err := srk(t)
		if err != nil {
			return nil, err
		}
		defer flush(t, p.Handle)
		parent = &p
	}
	obj, pub, err := loadObject(t, parent, rec.Public, rec.Private)
	if errors.Is(err, errBlobRefused) {
		return nil, corrupt(path, "sealed data key", err)
	}
	if err != nil {
		return nil, err
	}
	defer flush(t, obj.Handle)
	want, err := pcrPolicy(rec.PCRs, rec.PCRValues)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(pub.AuthPolicy.Buffer, want) {
		return nil, corrupt(path, fmt.Sprintf("sealed data key: its policy %x is not the PCR policy %x of the PCR values recorded with it", pub.AuthPolicy.Buffer, want), nil)
	}
	// One use: the TPM flushes the session after the unseal. Salted with
	// the SRK, it also encrypts the answer: the data key never crosses
	// the TPM's bus in the clear.
	sess := tpm2.Policy(tpm2.TPMAlgSHA256, 16, func(t transport.TPM, h tpm2.TPMISHPolicy, _ tpm2.TPM2BNonce) error {
		if _, err := (tpm2.PolicyPCR{PolicySession: h, Pcrs: selection(rec.PCRs)}).Execute(t); err != nil {
			return fmt.Errorf("identity: PolicyPCR %v: %w", rec.PCRs, err)
		}
		return nil
	}, tpm2.Salted(parent.Handle, parent.pub), tpm2.AESEncryption(128, tpm2.EncryptOut))
	rsp, err := tpm2.Unseal{ItemHandle: tpm2.AuthHandle{Handle: obj.Handle, Name: obj.Name, Auth: sess}}.Execute(t)
	if err != nil {
		// go-tpm flushes a one-use session the command failed with.
		return nil, fmt.Errorf("identity: unseal data key: %w", err)
	}
	if len(rsp.OutData.Buffer) != dataKeySize {
		return nil, corrupt(path, fmt.Sprintf("sealed data key is %d bytes, want %d", len(rsp.OutData.Buffer), dataKeySize), nil)
	}
	return rsp.OutData.Buffer, nil
}
