package wire

import (
	"fmt"
	"time"
)

// Reply answers a tunnel Header. After an accepted Reply the stream
// carries the application's bytes; after a denied one the gate closes it.
type Reply struct {
	Accept bool `cbor:"1,keyasint"`
	// Rule is the policy rule that decided (empty when no rule matched).
	Rule string `cbor:"2,keyasint,omitempty"`
	// Reason says why the session was refused, or how it was allowed.
	Reason string `cbor:"3,keyasint,omitempty"`
	// Until is when the decision stops holding: the gate ends the session
	// then (unix seconds; 0 when no end is known).
	Until int64 `cbor:"4,keyasint,omitempty"`
	// Session is the session id in the gate's audit log.
	Session string `cbor:"5,keyasint,omitempty"`
}

// UntilTime returns Until as a time (zero when unset).
func (r Reply) UntilTime() time.Time { return unixTime(r.Until) }

func unixTime(s int64) time.Time {
	if s == 0 {
		return time.Time{}
	}
	return time.Unix(s, 0)
}

// Login operations.
const (
	OpLogin  = "login"  // User, Password, Code, PublicKey -> Certificate
	OpAssets = "assets" // (client certificate) -> Assets
	OpLogout = "logout" // (client certificate) -> the user's credential generation is bumped
)

// Request is one call on a login connection.
type Request struct {
	Op       string `cbor:"1,keyasint"`
	User     string `cbor:"2,keyasint,omitempty"`
	Password string `cbor:"3,keyasint,omitempty"`
	Code     string `cbor:"4,keyasint,omitempty"`
	// PublicKey is the PKIX (DER) public key the certificate is for.
	PublicKey []byte `cbor:"5,keyasint,omitempty"`
}

// String never prints the password.
func (r Request) String() string {
	return fmt.Sprintf("wire.Request{Op:%q User:%q Password:[redacted] Code:[redacted]}", r.Op, r.User)
}

// GoString never prints the password.
func (r Request) GoString() string { return r.String() }

// Response answers a Request. Code is empty on success.
type Response struct {
	Code  string `cbor:"1,keyasint,omitempty"`
	Error string `cbor:"2,keyasint,omitempty"`
	// Certificate is the client certificate chain (leaf first, DER).
	Certificate [][]byte `cbor:"3,keyasint,omitempty"`
	// NotAfter of the certificate (unix seconds).
	NotAfter int64   `cbor:"4,keyasint,omitempty"`
	User     string  `cbor:"5,keyasint,omitempty"`
	Assets   []Asset `cbor:"6,keyasint,omitempty"`
}

// Response error codes.
const (
	CodeRefused    = "refused"     // login refused; Error says what the client may know
	CodeBadRequest = "bad-request" // malformed or unknown request
	CodeAuth       = "auth"        // missing, expired or revoked client certificate
	CodeInternal   = "internal"
)

// Asset is one asset and protocol the user may reach now.
type Asset struct {
	Name     string `cbor:"1,keyasint"`
	Protocol string `cbor:"2,keyasint"`
	Rule     string `cbor:"3,keyasint"`
	Until    int64  `cbor:"4,keyasint,omitempty"` // unix seconds; 0: no end known
	// Endpoint is the asset's Modbus/TCP Security endpoint (its overlay
	// address and the gate's port, "100.64.0.7:802") for a modbus entry
	// on a gate that serves one; "" otherwise.
	Endpoint string `cbor:"5,keyasint,omitempty"`
}

// UntilTime returns Until as a time (zero when unset).
func (a Asset) UntilTime() time.Time { return unixTime(a.Until) }
