//go:build !windows

package main

import (
	"context"
	"fmt"
	"time"

	"github.com/otgate/otgate/audit"
	"github.com/otgate/otgate/services/proxy/adminapi"
	"github.com/otgate/otgate/services/proxy/auth"
)

// userAdmin is where `otgate admin user` makes its changes: the running
// proxy's admin socket (the gate) or the user store opened directly (a
// development host with the proxy stopped).
type userAdmin interface {
	add(name string, password []byte, roles []string, secret []byte) (*adminapi.Enrolment, error)
	list() ([]auth.UserInfo, error)
	revoke(name string) (string, error)
	resetTOTP(name string) (*adminapi.Enrolment, error)
	// change runs unlock, disable, enable or remove; the string notes
	// the sessions it ended.
	change(op, name string) (string, error)
	where() string
}

// socketAdmin goes through the proxy's admin socket.
type socketAdmin struct{ path string }

func (a socketAdmin) where() string { return " (through the proxy at " + a.path + ")" }

func (a socketAdmin) call(req adminapi.Request) (*adminapi.Response, error) {
	return adminapi.Call(a.path, req)
}

func (a socketAdmin) add(name string, password []byte, roles []string, secret []byte) (*adminapi.Enrolment, error) {
	rsp, err := a.call(adminapi.Request{Op: adminapi.OpUserAdd, User: name, Roles: roles, Password: password, TOTPSecret: secret})
	if err != nil {
		return nil, err
	}
	if rsp.Enrolment == nil {
		return nil, fmt.Errorf("proxy admin %s: no enrolment in the answer", adminapi.OpUserAdd)
	}
	return rsp.Enrolment, nil
}

func (a socketAdmin) list() ([]auth.UserInfo, error) {
	rsp, err := a.call(adminapi.Request{Op: adminapi.OpUserList})
	if err != nil {
		return nil, err
	}
	out := make([]auth.UserInfo, 0, len(rsp.Users))
	for _, u := range rsp.Users {
		x := auth.UserInfo{Name: u.Name, Roles: u.Roles, Pending: u.Pending, Failures: u.Failures, Locked: u.Locked,
			Disabled: u.Disabled, Generation: u.Generation}
		if u.LockedUntil != 0 {
			x.LockedUntil = time.Unix(0, u.LockedUntil)
		}
		if u.LastLogin != 0 {
			x.LastLogin = time.Unix(0, u.LastLogin)
		}
		out = append(out, x)
	}
	return out, nil
}

func (a socketAdmin) revoke(name string) (string, error) {
	rsp, err := a.call(adminapi.Request{Op: adminapi.OpRevokeUser, User: name, Reason: "admin revoke (otgate admin user revoke)"})
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%d live sessions ended", rsp.Ended), nil
}

func (a socketAdmin) resetTOTP(name string) (*adminapi.Enrolment, error) {
	rsp, err := a.call(adminapi.Request{Op: adminapi.OpUserResetTOTP, User: name})
	if err != nil {
		return nil, err
	}
	if rsp.Enrolment == nil {
		return nil, fmt.Errorf("proxy admin %s: no enrolment in the answer", adminapi.OpUserResetTOTP)
	}
	return rsp.Enrolment, nil
}

func (a socketAdmin) change(op, name string) (string, error) {
	ops := map[string]string{"unlock": adminapi.OpUnlock, "disable": adminapi.OpUserDisable,
		"enable": adminapi.OpUserEnable, "remove": adminapi.OpUserRemove}
	rsp, err := a.call(adminapi.Request{Op: ops[op], User: name})
	if err != nil {
		return "", err
	}
	if rsp.Ended > 0 {
		return fmt.Sprintf(" (%d live sessions ended)", rsp.Ended), nil
	}
	return "", nil
}

// storeAdmin opens the user store itself (--direct). Every call that
// may change something is recorded in the proxy's audit log (log) before
// its outcome is told, as the admin socket records it (adminapi.Record,
// the caller being this process, marked --direct); without the log the
// change is refused (see openDirect).
type storeAdmin struct {
	st     *auth.Store
	site   string
	log    *audit.Writer // nil: read only (list)
	logDir string
	caller adminapi.Caller
}

func (a storeAdmin) where() string { return " (gate " + a.site + ")" }

// unrecorded refuses a change when no audit log is open to record it
// (a store opened for list only).
func (a storeAdmin) unrecorded(op string) error {
	if a.log == nil {
		return fmt.Errorf("admin %s: no audit log open to record it in; nothing was changed", op)
	}
	return nil
}

// record appends the admin event of req (opErr: the store refused it)
// to the audit log durably and returns opErr, or why the record could
// not be written.
func (a storeAdmin) record(req adminapi.Request, rsp adminapi.Response, opErr error) error {
	if opErr != nil {
		rsp.Error = opErr.Error()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := a.log.Append(ctx, adminapi.Record(req, rsp, a.caller))
	switch {
	case err == nil:
		return opErr
	case opErr != nil:
		return fmt.Errorf("%w (and recording the refusal in the audit log %s failed: %v)", opErr, a.logDir, err)
	}
	// openDirect checked that the log opened and the identity service
	// signs: a write failing now is the disk failing.
	return fmt.Errorf("admin %s of user %q WAS MADE, but its record could not be written to the audit log %s: %w; "+
		"the change stands unrecorded: note who made it and why, and check the log (otgate audit verify)", req.Op, req.User, a.logDir, err)
}

func enrolment(en *auth.Enrolment) *adminapi.Enrolment {
	p := en.Key.Params
	return &adminapi.Enrolment{User: en.User, URI: en.URI, Secret: en.Key.Secret, Algorithm: string(p.Algorithm), Digits: p.Digits, Period: p.Period}
}

func (a storeAdmin) add(name string, password []byte, roles []string, secret []byte) (*adminapi.Enrolment, error) {
	if err := a.unrecorded(adminapi.OpUserAdd); err != nil {
		return nil, err
	}
	en, err := a.st.AddUserWithSecret(name, password, roles, secret)
	if err := a.record(adminapi.Request{Op: adminapi.OpUserAdd, User: name, Roles: roles, TOTPSecret: secret}, adminapi.Response{}, err); err != nil {
		return nil, err
	}
	return enrolment(en), nil
}

func (a storeAdmin) list() ([]auth.UserInfo, error) { return a.st.Users(), nil }

func (a storeAdmin) revoke(name string) (string, error) {
	req := adminapi.Request{Op: adminapi.OpRevokeUser, User: name, Reason: "admin revoke (otgate admin user revoke)"}
	if err := a.unrecorded(req.Op); err != nil {
		return "", err
	}
	gen, err := a.st.Revoke(name, req.Reason)
	if err := a.record(req, adminapi.Response{}, err); err != nil {
		return "", err
	}
	return fmt.Sprintf("credential generation now %d", gen), nil
}

func (a storeAdmin) resetTOTP(name string) (*adminapi.Enrolment, error) {
	req := adminapi.Request{Op: adminapi.OpUserResetTOTP, User: name}
	if err := a.unrecorded(req.Op); err != nil {
		return nil, err
	}
	en, err := a.st.ResetTOTP(name)
	if err := a.record(req, adminapi.Response{}, err); err != nil {
		return nil, err
	}
	return enrolment(en), nil
}

func (a storeAdmin) change(op, name string) (string, error) {
	changes := map[string]struct {
		op string
		do func(string) error
	}{
		"unlock":  {adminapi.OpUnlock, a.st.Unlock},
		"disable": {adminapi.OpUserDisable, a.st.Disable},
		"enable":  {adminapi.OpUserEnable, a.st.Enable},
		"remove":  {adminapi.OpUserRemove, a.st.RemoveUser},
	}
	c, ok := changes[op]
	if !ok {
		return "", fmt.Errorf("admin user: unknown change %q", op)
	}
	req := adminapi.Request{Op: c.op, User: name}
	if err := a.unrecorded(req.Op); err != nil {
		return "", err
	}
	return "", a.record(req, adminapi.Response{}, c.do(name))
}
