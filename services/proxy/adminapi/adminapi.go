// Package adminapi is the proxy's local admin protocol: framed CBOR (see
// package wire) over the unix socket DefaultSocket, root only (the server
// checks SO_PEERCRED). One request, one response per call; several calls
// may share a connection. Every call but the listings (OpSessions,
// OpUserList) is an "admin-request" event in the proxy's audit log,
// written before the call acts and naming the caller's uid, pid and
// command, and then an "admin" event with its outcome, done or refused; a
// call the log cannot record is refused with nothing changed, and one
// whose outcome could not be recorded after it acted says so
// (Response.Unrecorded, UnrecordedError). A caller refused for its uid is
// an "admin-refused" event (RequestRecord, Record, EventAdminRequest,
// EventAdmin, EventAdminRefused).
// `otgate admin user ... --direct`, which opens the user store itself
// with the proxy stopped, records its changes in the same log the same
// way, the caller marked Direct. Passwords and TOTP secrets are never
// recorded.
package adminapi

import (
	"fmt"
	"net"
	"time"

	"github.com/otgate/otgate/services/proxy/wire"
)

// DefaultSocket is where the proxy listens on the appliance.
const DefaultSocket = "/run/otgate/proxy/admin.sock"

// Operations.
const (
	OpSessions     = "sessions"      // -> Sessions
	OpRevokeUser   = "revoke-user"   // User, Reason -> Ended
	OpRevokeSerial = "revoke-serial" // User, Serial (hex), Reason -> Ended
	OpReload       = "reload"        // -> Ended
	OpUnlock       = "unlock"        // User

	// User administration (the proxy's user store; see users.go).
	OpUserAdd       = "user-add"        // User, Roles, Password[, TOTPSecret] -> Enrolment
	OpUserList      = "user-list"       // -> Users
	OpUserDisable   = "user-disable"    // User -> Ended
	OpUserEnable    = "user-enable"     // User
	OpUserRemove    = "user-remove"     // User -> Ended
	OpUserResetTOTP = "user-reset-totp" // User -> Enrolment, Ended
)

// Request is one admin call.
type Request struct {
	Op     string `cbor:"1,keyasint"`
	User   string `cbor:"2,keyasint,omitempty"`
	Serial string `cbor:"3,keyasint,omitempty"`
	Reason string `cbor:"4,keyasint,omitempty"`
	// Roles and Password of a new user; TOTPSecret (raw bytes) imports
	// an existing authenticator secret instead of generating one.
	Roles      []string `cbor:"5,keyasint,omitempty"`
	Password   []byte   `cbor:"6,keyasint,omitempty"`
	TOTPSecret []byte   `cbor:"7,keyasint,omitempty"`
}

// String leaves out the password and the TOTP secret.
func (r Request) String() string {
	return fmt.Sprintf("%s user=%q serial=%q roles=%v", r.Op, r.User, r.Serial, r.Roles)
}

// Response answers a Request; Error is set on failure.
type Response struct {
	Error    string    `cbor:"1,keyasint,omitempty"`
	Sessions []Session `cbor:"2,keyasint,omitempty"`
	// Ended counts the live sessions the call ended.
	Ended int `cbor:"3,keyasint,omitempty"`
	// Users answers OpUserList.
	Users []User `cbor:"4,keyasint,omitempty"`
	// Enrolment answers OpUserAdd and OpUserResetTOTP: shown once.
	Enrolment *Enrolment `cbor:"5,keyasint,omitempty"`
	// Policy names the policy in force after OpReload (its source).
	Policy string `cbor:"6,keyasint,omitempty"`
	// Unrecorded is set when the call was made (its request recorded
	// before) but its outcome could not be written to the audit log
	// after: why. Call returns it as an *UnrecordedError beside the
	// response.
	Unrecorded string `cbor:"7,keyasint,omitempty"`
	// Moved counts the live sessions an OpReload moved, their
	// connections up, to other Modbus rules, another zone mode or another
	// grant.
	Moved int `cbor:"8,keyasint,omitempty"`
}

// ReloadSummary is how a reload's answer reads: the sessions ended, and
// the sessions moved when there are any.
func (r Response) ReloadSummary() string {
	s := fmt.Sprintf("%d live sessions ended as no longer allowed", r.Ended)
	if r.Moved > 0 {
		s += fmt.Sprintf(", %d moved to their new rules, zone mode or grant (connections kept)", r.Moved)
	}
	return s
}

// UnrecordedError is the error of a call that was made, whose outcome
// the audit log could not record (Call's for Response.Unrecorded; `otgate
// admin --direct` makes the same): the results returned beside it are the
// call's, which the caller should still show.
type UnrecordedError struct {
	Op, Why string
}

func (e *UnrecordedError) Error() string {
	return fmt.Sprintf("admin %s WAS MADE, but %s: note who made it and why, and check the log (otgate audit verify)", e.Op, e.Why)
}

// Session is one live session.
type Session struct {
	ID       string `cbor:"1,keyasint"`
	User     string `cbor:"2,keyasint"`
	Serial   string `cbor:"3,keyasint,omitempty"`
	Asset    string `cbor:"4,keyasint"`
	Protocol string `cbor:"5,keyasint"`
	Source   string `cbor:"6,keyasint,omitempty"`
	Rule     string `cbor:"7,keyasint"`
	// Monitor: the asset's zone is in monitor mode (the session's Modbus
	// requests the rules deny pass, recorded as would-deny).
	Monitor       bool   `cbor:"13,keyasint,omitempty"`
	Started       int64  `cbor:"8,keyasint"`           // unix ns
	Until         int64  `cbor:"9,keyasint,omitempty"` // unix ns
	BytesToAsset  uint64 `cbor:"10,keyasint,omitempty"`
	BytesToClient uint64 `cbor:"11,keyasint,omitempty"`
	IdleNanos     int64  `cbor:"12,keyasint,omitempty"`
}

// Call sends one request to the socket at path.
func Call(path string, req Request) (*Response, error) {
	c, err := net.DialTimeout("unix", path, 10*time.Second)
	if err != nil {
		return nil, fmt.Errorf("proxy admin socket: %w", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	if err := wire.WriteFrame(c, req); err != nil {
		return nil, fmt.Errorf("proxy admin %s: %w", req.Op, err)
	}
	var rsp Response
	if err := wire.ReadFromGate(c, &rsp); err != nil {
		return nil, fmt.Errorf("proxy admin %s: read answer: %w", req.Op, err)
	}
	if rsp.Error != "" {
		return &rsp, fmt.Errorf("proxy admin %s: %s", req.Op, rsp.Error)
	}
	if rsp.Unrecorded != "" {
		return &rsp, &UnrecordedError{Op: req.Op, Why: rsp.Unrecorded}
	}
	return &rsp, nil
}
