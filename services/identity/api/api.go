// Package api is the identity service's local protocol and its client: CBOR
// messages over the unix socket /run/otgate/identity.sock, each framed by a
// 4-byte big-endian length. Only the gate's own services may connect: the
// socket is mode 0660 and the server checks the peer's uid (SO_PEERCRED)
// against its allow-list, which also names the caller's service (secrets are
// kept per service, workload certificates name it).
package api

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/fxamacker/cbor/v2"
)

// DefaultSocket is where the service listens on the appliance.
const DefaultSocket = "/run/otgate/identity.sock"

// MaxMessage bounds one framed message.
const MaxMessage = 1 << 20

// Operations.
const (
	OpStatus       = "status"
	OpSign         = "sign"          // Digest, Hash -> Signature
	OpTLSCert      = "tls-cert"      // -> Certs (device chain, leaf first)
	OpSeal         = "seal"          // Name, Data
	OpUnseal       = "unseal"        // Name -> Data
	OpWorkloadCert = "workload-cert" // CSR, TTLSeconds -> Certs (leaf, workload CA)
	// OpSealNextBoot (root only): Digest is the boot measurement the next
	// boot will extend; the service seals the data key to the PCR values
	// that boot will have (an authorized policy apply, `otgate site apply`).
	OpSealNextBoot = "seal-next-boot"
)

// Error codes of Response.Code.
const (
	CodeDenied     = "denied"     // peer uid not allowed
	CodeQuarantine = "quarantine" // the data key is not available
	CodeNotFound   = "not-found"  // no such secret
	CodeBadRequest = "bad-request"
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
}

// Response answers a Request. Code is empty on success.
type Response struct {
	Code      string   `cbor:"1,keyasint,omitempty"`
	Error     string   `cbor:"2,keyasint,omitempty"`
	Signature []byte   `cbor:"3,keyasint,omitempty"`
	Certs     [][]byte `cbor:"4,keyasint,omitempty"`
	Data      []byte   `cbor:"5,keyasint,omitempty"`
	Status    *Status  `cbor:"6,keyasint,omitempty"`
}

// Status is the service's state, for init and `otgate status`.
type Status struct {
	DeviceURI string `cbor:"1,keyasint"`
	Serial    string `cbor:"2,keyasint"`
	DevMode   bool   `cbor:"3,keyasint"`
	// Quarantine is set when the data key did not unseal.
	Quarantine bool   `cbor:"4,keyasint"`
	Reason     string `cbor:"5,keyasint,omitempty"`
	Remedy     string `cbor:"6,keyasint,omitempty"`
	// Caller is the service name the server knows the caller as.
	Caller string `cbor:"7,keyasint,omitempty"`
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
)

// Is matches on Code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

var (
	encMode = func() cbor.EncMode {
		m, err := cbor.CoreDetEncOptions().EncMode()
		if err != nil {
			panic(err)
		}
		return m
	}()
	decMode = func() cbor.DecMode {
		m, err := cbor.DecOptions{ExtraReturnErrors: cbor.ExtraDecErrorUnknownField}.DecMode()
		if err != nil {
			panic(err)
		}
		return m
	}()
)

// WriteMessage writes v as one framed CBOR message.
func WriteMessage(w io.Writer, v any) error {
	b, err := encMode.Marshal(v)
	if err != nil {
		return err
	}
	if len(b) > MaxMessage {
		return fmt.Errorf("message of %d bytes exceeds %d", len(b), MaxMessage)
	}
	buf := make([]byte, 4+len(b))
	binary.BigEndian.PutUint32(buf, uint32(len(b)))
	copy(buf[4:], b)
	_, err = w.Write(buf)
	return err
}

// ReadMessage reads one framed CBOR message into v.
func ReadMessage(r io.Reader, v any) error {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > MaxMessage {
		return fmt.Errorf("message of %d bytes exceeds %d", n, MaxMessage)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	return decMode.Unmarshal(b, v)
}
