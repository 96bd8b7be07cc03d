package proxy

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/otgate/otgate/services/proxy/adminapi"
	"github.com/otgate/otgate/services/proxy/auth"
)

// UserAdmin is the administration side of the user store (*auth.Store).
// The proxy holds the store open, so on a running gate every change goes
// through its admin socket.
type UserAdmin interface {
	AddUserWithSecret(name string, password []byte, roles []string, secret []byte) (*auth.Enrolment, error)
	Users() []auth.UserInfo
	Disable(name string) error
	Enable(name string) error
	RemoveUser(name string) error
	ResetTOTP(name string) (*auth.Enrolment, error)
}

// handleUser serves the admin socket's user operations. Changes that
// invalidate credentials end the user's live sessions at once. A new
// user's roles must be roles the policy in force defines.
func (a *AdminServer) handleUser(req adminapi.Request) adminapi.Response {
	s := a.srv
	ua := s.cfg.UserAdmin
	if ua == nil {
		return adminapi.Response{Error: "this proxy has no user administration configured"}
	}
	if req.Op != adminapi.OpUserList && req.User == "" {
		return adminapi.Response{Error: req.Op + ": missing user name"}
	}
	live := s.userSessions(req.User)
	var err error
	var en *auth.Enrolment
	switch req.Op {
	case adminapi.OpUserList:
		return adminapi.Response{Users: userList(ua.Users())}
	case adminapi.OpUserAdd:
		if len(req.Password) == 0 {
			return adminapi.Response{Error: fmt.Sprintf("%s %q: empty password", req.Op, req.User)}
		}
		if err = checkRoles(s.Policy(), req.Roles); err == nil {
			en, err = ua.AddUserWithSecret(req.User, req.Password, req.Roles, req.TOTPSecret)
		}
	case adminapi.OpUserDisable:
		err = ua.Disable(req.User)
	case adminapi.OpUserEnable:
		err = ua.Enable(req.User)
	case adminapi.OpUserRemove:
		err = ua.RemoveUser(req.User)
	case adminapi.OpUserResetTOTP:
		en, err = ua.ResetTOTP(req.User)
	default:
		err = errors.New("not a user operation")
	}
	if err != nil {
		return adminapi.Response{Error: fmt.Sprintf("%s %q: %v", req.Op, req.User, err)}
	}
	s.RecheckUser(req.User)
	rsp := adminapi.Response{Ended: countEnded(live)}
	if en != nil {
		p := en.Key.Params
		rsp.Enrolment = &adminapi.Enrolment{User: en.User, URI: en.URI, Secret: en.Key.Secret,
			Algorithm: string(p.Algorithm), Digits: p.Digits, Period: p.Period}
	}
	return rsp
}

func userList(us []auth.UserInfo) []adminapi.User {
	out := make([]adminapi.User, 0, len(us))
	for _, u := range us {
		x := adminapi.User{Name: u.Name, Roles: u.Roles, Pending: u.Pending, Failures: u.Failures, Locked: u.Locked,
			Disabled: u.Disabled, Generation: u.Generation}
		if !u.LockedUntil.IsZero() {
			x.LockedUntil = u.LockedUntil.UnixNano()
		}
		if !u.LastLogin.IsZero() {
			x.LastLogin = u.LastLogin.UnixNano()
		}
		out = append(out, x)
	}
	return out
}

// checkRoles refuses a role the policy in force does not define, naming
// it, the roles there are and the policy's source. No roles is fine: the
// site file's user list gives a user its roles.
func checkRoles(p *Policy, roles []string) error {
	if len(roles) == 0 || p == nil || p.Site == nil {
		return nil
	}
	known := make([]string, 0, len(p.Site.Access.Roles))
	for _, r := range p.Site.Access.Roles {
		known = append(known, r.Name)
	}
	for _, r := range roles {
		if slices.Contains(known, r) {
			continue
		}
		if len(known) == 0 {
			return fmt.Errorf("role %q: the policy in force (%s) defines no roles; add it to the site file's roles and apply it first", r, p.Source)
		}
		return fmt.Errorf("role %q is not defined in the policy in force (%s); its roles are %s", r, p.Source, strings.Join(known, ", "))
	}
	return nil
}
