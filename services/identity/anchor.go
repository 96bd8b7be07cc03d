package identity

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// AnchorNVIndex is the TPM NV counter that anchors the audit log (see
// audit.Anchor): the proxy records the value the counter is about to take
// in the log, durably, and then has it advanced, at every open and clean
// close of the log. The counter only goes forward, and /perm cannot hold
// it: a log directory rolled back to an earlier copy, or cut back to an
// earlier clean close, ends behind it, which the next open of the log
// records (signed) and `otgate audit verify --anchor` shows.
//
// Owner-written and readable with its own empty auth, noDA. A TPM 2.0
// counter starts, at its first increment, at the highest value any counter
// on the TPM ever held, so undefining and defining it again (which needs
// the owner's auth) cannot move it back either.
const AnchorNVIndex = tpm2.TPMHandle(0x01004f55)

// ErrNoAnchor: the identity has no TPM (dev mode), so there is no counter
// to anchor the audit log to.
var ErrNoAnchor = errors.New("no TPM in dev mode: the audit log has no anchor counter")

// AuditAnchor reads the anchor counter: defined is false when the counter
// was never advanced on this TPM (never defined, or defined and not yet
// incremented: a power cut between the two). It is refused in quarantine
// like everything that vouches for the gate.
func (id *Identity) AuditAnchor() (value uint64, defined bool, err error) {
	if id.tpm == nil {
		return 0, false, ErrNoAnchor
	}
	if err := id.refuseInQuarantine("audit-anchor"); err != nil {
		return 0, false, err
	}
	id.anchorMu.Lock()
	defer id.anchorMu.Unlock()
	return readCounter(id.tpm, AnchorNVIndex)
}

// AdvanceAuditAnchor advances the anchor counter by one from the value
// the caller read (from; fromDefined false: never advanced), defining it
// first when the TPM has none, and returns the value it then has. When the
// counter no longer holds from it is left alone and its value returned:
// a repeated request (the caller's connection broke before the answer)
// advances it once, not twice, and the caller sees any other difference.
// The first advance on a TPM gives whatever the TPM starts counters at
// (see AnchorNVIndex).
func (id *Identity) AdvanceAuditAnchor(from uint64, fromDefined bool) (uint64, error) {
	if id.tpm == nil {
		return 0, ErrNoAnchor
	}
	if err := id.refuseInQuarantine("audit-anchor"); err != nil {
		return 0, err
	}
	id.anchorMu.Lock()
	defer id.anchorMu.Unlock()
	cur, defined, err := readCounter(id.tpm, AnchorNVIndex)
	if err != nil {
		return 0, err
	}
	if defined != fromDefined || (defined && cur != from) {
		if !defined {
			return 0, fmt.Errorf("identity: the audit anchor counter was never advanced, but the caller read %d from it", from)
		}
		return cur, nil
	}
	return advanceCounter(id.tpm, AnchorNVIndex)
}

var ownerAuth = tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)}

// readCounter reads the 8-byte NV counter at index.
func readCounter(t transport.TPM, index tpm2.TPMHandle) (uint64, bool, error) {
	pub, err := tpm2.NVReadPublic{NVIndex: index}.Execute(t)
	if errors.Is(err, tpm2.TPMRCHandle) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("identity: read NV index %#x public area: %w", uint32(index), err)
	}
	if err := checkCounter(pub, index); err != nil {
		return 0, false, err
	}
	rsp, err := tpm2.NVRead{
		AuthHandle: tpm2.AuthHandle{Handle: index, Name: pub.NVName, Auth: tpm2.PasswordAuth(nil)},
		NVIndex:    tpm2.NamedHandle{Handle: index, Name: pub.NVName},
		Size:       8,
	}.Execute(t)
	if errors.Is(err, tpm2.TPMRCNVUninitialized) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("identity: read NV counter %#x: %w", uint32(index), err)
	}
	if len(rsp.Data.Buffer) != 8 {
		return 0, false, fmt.Errorf("identity: NV counter %#x read %d bytes, want 8", uint32(index), len(rsp.Data.Buffer))
	}
	return binary.BigEndian.Uint64(rsp.Data.Buffer), true, nil
}

// checkCounter refuses an index that is not the counter this package
// defines: something else at that handle must not be taken for it.
func checkCounter(pub *tpm2.NVReadPublicResponse, index tpm2.TPMHandle) error {
	p, err := pub.NVPublic.Contents()
	if err != nil {
		return fmt.Errorf("identity: NV index %#x public area: %w", uint32(index), err)
	}
	a := p.Attributes
	if a.NT != tpm2.TPMNTCounter || !a.OwnerWrite || !a.AuthRead || a.AuthWrite || a.PolicyWrite {
		return fmt.Errorf("identity: NV index %#x is not the audit anchor counter (type %d, attributes %+v): "+
			"something else defined it; remove it with the TPM owner's authorization to let the gate define its own", uint32(index), a.NT, a)
	}
	return nil
}

// advanceCounter increments the NV counter at index, defining it first if
// needed, and returns the value it then has.
func advanceCounter(t transport.TPM, index tpm2.TPMHandle) (uint64, error) {
	pub, err := tpm2.NVReadPublic{NVIndex: index}.Execute(t)
	if errors.Is(err, tpm2.TPMRCHandle) {
		nvPub := tpm2.TPMSNVPublic{
			NVIndex: index,
			NameAlg: tpm2.TPMAlgSHA256,
			Attributes: tpm2.TPMANV{
				OwnerWrite: true, OwnerRead: true, AuthRead: true, NoDA: true,
				NT: tpm2.TPMNTCounter,
			},
			DataSize: 8,
		}
		if _, err := (tpm2.NVDefineSpace{AuthHandle: ownerAuth, PublicInfo: tpm2.New2B(nvPub)}).Execute(t); err != nil {
			return 0, fmt.Errorf("identity: define NV counter %#x: %w", uint32(index), err)
		}
		pub, err = tpm2.NVReadPublic{NVIndex: index}.Execute(t)
	}
	if err != nil {
		return 0, fmt.Errorf("identity: read NV index %#x public area: %w", uint32(index), err)
	}
	if err := checkCounter(pub, index); err != nil {
		return 0, err
	}
	if _, err := (tpm2.NVIncrement{AuthHandle: ownerAuth, NVIndex: tpm2.NamedHandle{Handle: index, Name: pub.NVName}}).Execute(t); err != nil {
		return 0, fmt.Errorf("identity: increment NV counter %#x: %w", uint32(index), err)
	}
	v, defined, err := readCounter(t, index)
	if err == nil && !defined {
		err = fmt.Errorf("identity: NV counter %#x reads as never written after its increment", uint32(index))
	}
	return v, err
}
