package auth

import (
	"net/netip"
	"time"
)

// Reason says why a login was refused, or is ReasonNone.
type Reason string

// Refusal reasons. The client sees only Refusal.ClientMessage; the audit
// event carries the exact reason.
const (
	ReasonNone         Reason = ""
	ReasonUnknownUser  Reason = "unknown-user"
	ReasonBadPassword  Reason = "bad-password"
	ReasonBadCode      Reason = "bad-code"
	ReasonReplayedCode Reason = "replayed-code"
	ReasonLocked       Reason = "locked"
	ReasonDisabled     Reason = "disabled"
	// ReasonThrottled: too soon after this user's last failure.
	ReasonThrottled Reason = "throttled"
	// ReasonSourceLimited: too many failures from this source address.
	ReasonSourceLimited Reason = "source-rate-limited"
	// ReasonMalformed: an empty user name or password, or a code that is
	// not digits of the right length.
	ReasonMalformed Reason = "malformed"
)

// EventKind names what happened.
type EventKind string

// Event kinds.
const (
	EventLogin         EventKind = "login"        // success
	EventLoginFailed   EventKind = "login-failed" // Reason says why
	EventEnrolled      EventKind = "enrolment-confirmed"
	EventLocked        EventKind = "locked"
	EventUnlocked      EventKind = "unlocked"
	EventUserAdded     EventKind = "user-added"
	EventUserRemoved   EventKind = "user-removed"
	EventDisabled      EventKind = "disabled"
	EventEnabled       EventKind = "enabled"
	EventRevoked       EventKind = "credentials-revoked" // generation bumped
	EventSerialRevoked EventKind = "certificate-revoked"
	EventPasswordSet   EventKind = "password-set"
	EventTOTPReset     EventKind = "totp-reset"
)

// AuthEvent is one audit event of the user store.
type AuthEvent struct {
	Time   time.Time
	Kind   EventKind
	User   string
	Source netip.Addr // the client address of a login; invalid for admin actions
	Reason Reason
	// Failures is the user's consecutive failure count after this event.
	Failures int
	// Generation is the user's credential generation after this event.
	Generation uint64
	// Detail is free text (e.g. who unlocked, until when locked).
	Detail string
}

// Events receives audit events (the audit log). The store calls it after
// the change the event describes is durable, outside its lock;
// implementations must be safe for concurrent use.
type Events interface {
	AuthEvent(e AuthEvent)
}

type discardEvents struct{}

func (discardEvents) AuthEvent(AuthEvent) {}
