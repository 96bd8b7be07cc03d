package wire

import (
	"fmt"
	"time"
)

// ALPNNotices is the session notice stream: mutual TLS with the client
// certificate, like a tunnel. The client sends nothing; the gate answers
// with a NoticeHello (or a NoticeClosed saying why not, then closes) and
// then pushes Notice frames about the user's live sessions until the
// client closes the stream, the certificate is revoked or expires, or the
// gate shuts down (each announced by a final NoticeClosed). A newer gate
// may add fields to Notice: clients skip the ones they do not know
// (ReadFromGate); a kind they do not know they ignore. A change of
// meaning needs a new ALPN name.
const ALPNNotices = "otgate-notices/1"

// Notice kinds.
const (
	// NoticeHello opens an accepted stream: User, Until (the credential's
	// end) and WarnBefore (the gate's warning lead, ms).
	NoticeHello = "hello"
	// NoticeDeadline: a live session's deadline was set (at connect) or
	// moved (reload): Session, Asset, Protocol, Rule, Until (0: none).
	NoticeDeadline = "deadline"
	// NoticeWarning: the session ends in Left ms (the gate's warning lead
	// before its deadline, or less when the deadline is nearer); it also
	// carries Asset, Protocol, Rule and Until.
	NoticeWarning = "warning"
	// NoticeRules: the session's Modbus requests are judged otherwise
	// from now on (other rules: a policy reload changed its grant's, or a
	// grant with other rules took it over; or its asset's zone went into
	// or out of monitor mode): Session, Asset, Protocol, Rule (the grant),
	// Until, and Reason, which says how, for the user.
	NoticeRules = "rules"
	// NoticeEnded: the session ended with Reason, the reason the audit
	// log records; ByGate says the gate ended it (deadline, revoke,
	// reload, idle timeout, shutdown), not the client or the asset.
	NoticeEnded = "ended"
	// NoticeClosed is the last frame of a stream: Reason says why the
	// gate closes it (credential revoked or expired, stream limit, shut
	// down) or refused it.
	NoticeClosed = "closed"
)

// Notice is one frame of a notice stream.
type Notice struct {
	Kind     string `cbor:"1,keyasint"`
	Session  string `cbor:"2,keyasint,omitempty"`
	Asset    string `cbor:"3,keyasint,omitempty"`
	Protocol string `cbor:"4,keyasint,omitempty"`
	Rule     string `cbor:"5,keyasint,omitempty"`
	// Until is the session's deadline (the credential's end in a hello),
	// unix seconds; 0: no end known.
	Until int64 `cbor:"6,keyasint,omitempty"`
	// Left is the time to the deadline in milliseconds (warning).
	Left   int64  `cbor:"7,keyasint,omitempty"`
	Reason string `cbor:"8,keyasint,omitempty"`
	ByGate bool   `cbor:"9,keyasint,omitempty"`
	// Dropped counts the notices the gate dropped for this stream before
	// this one because the client did not read fast enough (cumulative).
	Dropped uint64 `cbor:"10,keyasint,omitempty"`
	User    string `cbor:"11,keyasint,omitempty"`
	// WarnBefore is the gate's warning lead in milliseconds (hello).
	WarnBefore int64 `cbor:"12,keyasint,omitempty"`
}

// UntilTime returns Until as a time (zero when unset).
func (n Notice) UntilTime() time.Time { return unixTime(n.Until) }

// LeftDuration returns Left as a duration.
func (n Notice) LeftDuration() time.Duration { return time.Duration(n.Left) * time.Millisecond }

// String is a one-line description for logs.
func (n Notice) String() string {
	switch n.Kind {
	case NoticeDeadline:
		return fmt.Sprintf("session %s (%s/%s, rule %s): deadline %s", n.Session, n.Asset, n.Protocol, n.Rule, untilString(n.UntilTime()))
	case NoticeWarning:
		return fmt.Sprintf("session %s (%s/%s, rule %s): ends in %v", n.Session, n.Asset, n.Protocol, n.Rule, n.LeftDuration())
	case NoticeEnded:
		return fmt.Sprintf("session %s (%s/%s): ended: %s", n.Session, n.Asset, n.Protocol, n.Reason)
	case NoticeHello:
		return fmt.Sprintf("notices for %s (credential %s, warnings %v ahead)", n.User, untilString(n.UntilTime()), time.Duration(n.WarnBefore)*time.Millisecond)
	case NoticeClosed:
		return "notice stream closed: " + n.Reason
	}
	return fmt.Sprintf("notice %q", n.Kind)
}

func untilString(t time.Time) string {
	if t.IsZero() {
		return "none"
	}
	return "until " + t.UTC().Format(time.RFC3339)
}
