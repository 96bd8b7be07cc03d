package adminapi

import (
	"fmt"
	"net/netip"
	"os"
	"strings"

	"github.com/otgate/otgate/audit"
)

// Audit event types of admin calls.
const (
	// EventAdminRequest records a call that may change something before
	// the call acts (RequestRecord): a call the audit log cannot record
	// is refused, nothing changed.
	EventAdminRequest = "admin-request"
	// EventAdmin records the outcome of such a call, done or refused
	// (Record).
	EventAdmin = "admin"
	// EventAdminRefused records a caller the admin socket refused for its
	// uid.
	EventAdminRefused = "admin-refused"
)

// Caller is who made an admin call, as the audit log names it: from
// SO_PEERCRED on the admin socket, from the process itself with
// `otgate admin ... --direct`.
type Caller struct {
	UID, PID int
	Comm     string // its command name, best effort (Comm)
	// Direct: the call did not go through the proxy's admin socket; the
	// caller opened the user store itself, the proxy stopped
	// (`otgate admin ... --direct`).
	Direct bool
}

func (c Caller) String() string {
	s := fmt.Sprintf("uid %d pid %d", c.UID, c.PID)
	if c.Comm != "" {
		s += " (" + c.Comm + ")"
	}
	if c.Direct {
		s += " with --direct"
	}
	return s
}

// Comm is the command name of process pid (/proc/<pid>/comm), "" when
// it cannot be read.
func Comm(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// Changes reports whether a call of op may change something: every
// operation but the listings (OpSessions, OpUserList). Those calls are
// recorded (Record).
func Changes(op string) bool { return op != OpSessions && op != OpUserList }

// RequestRecord is the audit event written before a call that may
// change something acts: who (by), what, on whom. Its outcome follows in
// a Record. Never the password or the TOTP secret.
func RequestRecord(req Request, by Caller) audit.Event {
	return audit.Event{Type: EventAdminRequest, User: req.User, Reason: fmt.Sprintf("%s by %s", describe(req), by)}
}

// Record is the audit event of the outcome of a call that may change
// something, done or refused: who (by), what, on whom, and the outcome
// (rsp). Never the password or the TOTP secret.
func Record(req Request, rsp Response, by Caller) audit.Event {
	outcome := "done"
	if rsp.Error != "" {
		outcome = "refused: " + rsp.Error
	}
	if rsp.Ended > 0 {
		outcome += fmt.Sprintf(", %d live sessions ended", rsp.Ended)
	}
	return audit.Event{Type: EventAdmin, User: req.User, Reason: fmt.Sprintf("%s by %s: %s", describe(req), by, outcome)}
}

// describe is the call's operation with what it carries, for the
// records: roles, an imported secret (not its value), serial, reason.
func describe(req Request) string {
	var what []string
	if len(req.Roles) > 0 {
		what = append(what, "roles "+strings.Join(req.Roles, ","))
	}
	if req.Op == OpUserAdd && req.TOTPSecret != nil {
		what = append(what, "imported TOTP secret")
	}
	if req.Serial != "" {
		what = append(what, fmt.Sprintf("serial %q", req.Serial))
	}
	if req.Reason != "" {
		what = append(what, fmt.Sprintf("reason %q", req.Reason))
	}
	op := req.Op
	if len(what) > 0 {
		op += " (" + strings.Join(what, "; ") + ")"
	}
	return op
}

// StoreAuditEvent is the audit record of a user store event
// (auth.AuthEvent, passed by its fields: this package builds on every
// platform the client does, the store does not): the kind, the user, the
// source address when there is one, and the reason with its detail. The
// proxy and `otgate admin --direct` record the store's events with it.
func StoreAuditEvent(kind, user, reason, detail string, source netip.Addr) audit.Event {
	ev := audit.Event{Type: kind, User: user, Reason: reason}
	if source.IsValid() {
		ev.Source = source.String()
	}
	if detail != "" {
		if ev.Reason != "" {
			ev.Reason += ": "
		}
		ev.Reason += detail
	}
	return ev
}
