package proxy

import (
	"context"
	"time"

	"github.com/otgate/otgate/audit"
	"github.com/otgate/otgate/services/proxy/adminapi"
	"github.com/otgate/otgate/services/proxy/auth"
)

// AuthEvents writes the user store's events (logins, failures, lockouts,
// unlocks, revocations) to the audit log durably. Use it as
// auth.Config.Events.
type AuthEvents struct {
	Log  *audit.Writer
	Logf func(format string, args ...any)
}

// AuthEvent appends e.
func (a AuthEvents) AuthEvent(e auth.AuthEvent) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := a.Log.Append(ctx, adminapi.StoreAuditEvent(string(e.Kind), e.User, string(e.Reason), e.Detail, e.Source)); err != nil && a.Logf != nil {
		a.Logf("proxy: audit log: auth event %s of %q: %v", e.Kind, e.User, err)
	}
}
