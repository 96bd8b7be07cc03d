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
	c, err := readCounter(id.tpm, AnchorNVIndex)
	return c.value, c.written, err
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
	c, err := readCounter(id.tpm, AnchorNVIndex)
	if err != nil {
		return 0, err
	}
	if c.written != fromDefined || (c.written && c.value != from) {
		if !c.written {
			return 0, fmt.Errorf("identity: the audit anchor counter was never advanced, but the caller read %d from it", from)
		}
		return c.value, nil
	}
	if c.written {
		// A written counter's name no longer changes, and an increment
		// adds one: no need to read it all again.
		if err := incrementCounter(id.tpm, AnchorNVIndex, c.pub); err != nil {
			return 0, err
		}
		return c.value + 1, nil
	}
	return advanceCounter(id.tpm, AnchorNVIndex)
}

var ownerAuth = tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)}

// nvCounter is what readCounter found: the counter's value once it was
// written (incremented) at least once, and its public area when the
// index exists.
type nvCounter struct {
	value   uint64
	written bool
	pub     *tpm2.NVReadPublicResponse
}

// readCounter reads the 8-byte NV counter at index.
func readCounter(t transport.TPM, index tpm2.TPMHandle) (nvCounter, error) {
	pub, err := tpm2.NVReadPublic{NVIndex: index}.Execute(t)
	if errors.Is(err, tpm2.TPMRCHandle) {
		return nvCounter{}, nil
	}
	if err != nil {
		return nvCounter{}, fmt.Errorf("identity: read NV index %#x public area: %w", uint32(index), err)
	}
	if err := checkCounter(pub, index); err != nil {
		return nvCounter{}, err
	}
	c := nvCounter{pub: pub}
	rsp, err := tpm2.NVRead{
		AuthHandle: tpm2.AuthHandle{Handle: index, Name: pub.NVName, Auth: tpm2.PasswordAuth(nil)},
		NVIndex:    tpm2.NamedHandle{Handle: index, Name: pub.NVName},
		Size:       8,
	}.Execute(t)
	if errors.Is(err, tpm2.TPMRCNVUninitialized) {
		return c, nil
	}
	if err != nil {
		return c, fmt.Errorf("identity: read NV counter %#x: %w", uint32(index), err)
	}
	if len(rsp.Data.Buffer) != 8 {
		return c, fmt.Errorf("identity: NV counter %#x read %d bytes, want 8", uint32(index), len(rsp.Data.Buffer))
	}
	c.value, c.written = binary.BigEndian.Uint64(rsp.Data.Buffer), true
	return c, nil
}

// incrementCounter increments the counter at index, whose public area is
// pub.
func incrementCounter(t transport.TPM, index tpm2.TPMHandle, pub *tpm2.NVReadPublicResponse) error {
	if _, err := (tpm2.NVIncrement{AuthHandle: ownerAuth, NVIndex: tpm2.NamedHandle{Handle: index, Name: pub.NVName}}).Execute(t); err != nil {
		return fmt.Errorf("identity: increment NV counter %#x: %w", uint32(index), err)
	}
	return nil
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

// advanceCounter increments the NV counter at index for the first time,
// defining it first if needed, and returns the value it then has (the
// value a TPM starts counters at: read back).
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
	if err := incrementCounter(t, index, pub); err != nil {
		return 0, err
	}
	c, err := readCounter(t, index)
	if err == nil && !c.written {
		err = fmt.Errorf("identity: NV counter %#x reads as never written after its increment", uint32(index))
	}
	return c.value, err
}
