// Package api is the identity service's local protocol and its client: CBOR
// messages over the unix socket /run/otgate/identity.sock, each framed by a
// 4-byte big-endian length. Only the gate's own services may connect: the
// socket is mode 0660 and the server checks the peer's uid (SO_PEERCRED)
// against its allow-list, which also names the caller's service (secrets are
// kept per service, workload certificates name it).
package api

import (
	"fmt"
	"io"

	"github.com/fxamacker/cbor/v2"

	"github.com/otgate/otgate/internal/cborframe"
)

// DefaultSocket is where the service listens on the appliance.
const DefaultSocket = "/run/otgate/identity.sock"

// MaxMessage bounds one framed message.
const MaxMessage = 1 << 20

// Operations.
const (
	OpStatus = "status"
	// OpSignMessage: Data is a whole message, Hash the hash to sign it
	// with -> Signature. The service signs only what it recognises: the
	// content of a TLS 1.3 server CertificateVerify (RFC 8446, 4.4.3)
	// and an audit checkpoint (audit.CheckpointMessage); never a
	// certificate or any other digest.
	OpSignMessage  = "sign-message"
	OpTLSCert      = "tls-cert"      // -> Certs (device chain, leaf first)
	OpSeal         = "seal"          // Name, Data
	OpUnseal       = "unseal"        // Name -> Data
	OpWorkloadCert = "workload-cert" // CSR, TTLSeconds -> Certs (leaf, workload CA)
	// OpSealNextBoot (root only): Digest is the boot measurement the next
	// boot will extend; the service seals the data key to the PCR values
	// that boot will have (an authorized policy apply, `otgate site apply`).
	OpSealNextBoot = "seal-next-boot"
	// OpAuditAnchor reads the TPM counter that anchors the audit log:
	// -> Anchor. OpAdvanceAuditAnchor (the proxy only) advances it by
	// one from Anchor/AnchorDefined, the value the caller read, and
	// answers the value it then has; a counter that no longer holds that
	// value is left alone (a repeated request advances it once).
	OpAuditAnchor        = "audit-anchor"
	OpAdvanceAuditAnchor = "advance-audit-anchor"
)

// Error codes of Response.Code.
const (
	CodeDenied     = "denied"     // peer uid not allowed
	CodeQuarantine = "quarantine" // the data key is not available
	CodeNotFound   = "not-found"  // no such secret
	CodeBadRequest = "bad-request"
	CodeNoTPM      = "no-tpm" // dev mode: the operation needs a TPM
	CodeInternal   = "internal"
)

// Request is one call.
type Request struct {
	Op         string `cbor:"1,keyasint"`
	Digest     []byte `cbor:"2,keyasint,omitempty"`
	Hash       uint   `cbor:"3,keyasint,omitempty"` // crypto.Hash
	Name       string `cbor:"4,keyasint,omitempty"`
	Data       []byte `cbor:"5,keyasint,omitempty"`
	CSR        []byte `cbor:"6,keyasint,omitempty"`
	TTLSeconds int64  `cbor:"7,keyasint,omitempty"`
	// Anchor and AnchorDefined: OpAdvanceAuditAnchor's starting value.
	Anchor        uint64 `cbor:"8,keyasint,omitempty"`
	AnchorDefined bool   `cbor:"9,keyasint,omitempty"`
}

// Response answers a Request. Code is empty on success.
type Response struct {
	Code      string   `cbor:"1,keyasint,omitempty"`
	Error     string   `cbor:"2,keyasint,omitempty"`
	Signature []byte   `cbor:"3,keyasint,omitempty"`
	Certs     [][]byte `cbor:"4,keyasint,omitempty"`
	Data      []byte   `cbor:"5,keyasint,omitempty"`
	Status    *Status  `cbor:"6,keyasint,omitempty"`
	Anchor    *Anchor  `cbor:"7,keyasint,omitempty"`
}

// Anchor is the audit anchor counter's value; Defined is false when it was
// never advanced on this TPM.
type Anchor struct {
	Value   uint64 `cbor:"1,keyasint"`
	Defined bool   `cbor:"2,keyasint"`
}

// Status is the service's state, for init and `otgate status`.
type Status struct {
	DeviceURI string `cbor:"1,keyasint"`
	Serial    string `cbor:"2,keyasint"`
	// DevMode: the service runs without a TPM (-dev): the device key is a
	// software key. The proxy then marks every audit record
	// (audit.WithDevMode).
	DevMode bool `cbor:"3,keyasint"`
	// Quarantine is set when the data key did not unseal.
	Quarantine bool   `cbor:"4,keyasint"`
	Reason     string `cbor:"5,keyasint,omitempty"`
	Remedy     string `cbor:"6,keyasint,omitempty"`
	// Caller is the service name the server knows the caller as.
	Caller string `cbor:"7,keyasint,omitempty"`
	// RemedyShort is Remedy in one short clause, for one-line notes (the
	// trust row's note in `otgate status`).
	RemedyShort string `cbor:"8,keyasint,omitempty"`
	// CertNotAfter is the end of the device certificate's validity (unix
	// seconds; 0: unknown).
	CertNotAfter int64 `cbor:"9,keyasint,omitempty"`
	// CertWarnings: the device certificate expires within 30 days or has
	// expired, or it can certify (a CA): each says what to do.
	CertWarnings []string `cbor:"10,keyasint,omitempty"`
}

// Error is a failed call.
type Error struct {
	Op, Code, Msg string
}

func (e *Error) Error() string { return fmt.Sprintf("identity %s: %s: %s", e.Op, e.Code, e.Msg) }

// Sentinels to test an *Error's Code with errors.Is.
var (
	ErrDenied     = &Error{Code: CodeDenied}
	ErrQuarantine = &Error{Code: CodeQuarantine}
	ErrNotFound   = &Error{Code: CodeNotFound}
	ErrNoTPM      = &Error{Code: CodeNoTPM}
	ErrBadRequest = &Error{Code: CodeBadRequest}
)

// Is matches on Code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// frames is the protocol's framing; decoding is strict (an unknown field
// is an error, not silently dropped).
var frames = cborframe.MustNew(MaxMessage, cbor.DecOptions{ExtraReturnErrors: cbor.ExtraDecErrorUnknownField})

// WriteMessage writes v as one framed CBOR message; one over MaxMessage is
// an error naming its size, and nothing is written.
func WriteMessage(w io.Writer, v any) error { return frames.Write(w, v) }

// ReadMessage reads one framed CBOR message into v. At a clean end of the
// stream it returns io.EOF itself; see cborframe.Codec.Read.
func ReadMessage(r io.Reader, v any) error { return frames.Read(r, v) }
