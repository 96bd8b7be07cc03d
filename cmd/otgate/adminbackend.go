//go:build !windows

package main

import (
	"context"
	"errors"
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
	if err != nil && !made(err) {
		return nil, err
	}
	if rsp.Enrolment == nil {
		return nil, fmt.Errorf("proxy admin %s: no enrolment in the answer", adminapi.OpUserAdd)
	}
	return rsp.Enrolment, err
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
	if err != nil && !made(err) {
		return "", err
	}
	return fmt.Sprintf("%d live sessions ended", rsp.Ended), err
}

func (a socketAdmin) resetTOTP(name string) (*adminapi.Enrolment, error) {
	rsp, err := a.call(adminapi.Request{Op: adminapi.OpUserResetTOTP, User: name})
	if err != nil && !made(err) {
		return nil, err
	}
	if rsp.Enrolment == nil {
		return nil, fmt.Errorf("proxy admin %s: no enrolment in the answer", adminapi.OpUserResetTOTP)
	}
	return rsp.Enrolment, err
}

func (a socketAdmin) change(op, name string) (string, error) {
	ops := map[string]string{"unlock": adminapi.OpUnlock, "disable": adminapi.OpUserDisable,
		"enable": adminapi.OpUserEnable, "remove": adminapi.OpUserRemove}
	rsp, err := a.call(adminapi.Request{Op: ops[op], User: name})
	if err != nil && !made(err) {
		return "", err
	}
	if rsp.Ended > 0 {
		return fmt.Sprintf(" (%d live sessions ended)", rsp.Ended), err
	}
	return "", err
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

// request records req in the audit log durably before the change is
// made (adminapi.RequestRecord, as the admin socket does), and refuses
// the change when it cannot: no log open (a store opened for list only)
// or the record not written.
func (a storeAdmin) request(req adminapi.Request) error {
	if a.log == nil {
		return fmt.Errorf("admin %s: no audit log open to record it in; nothing was changed", req.Op)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := a.log.Append(ctx, adminapi.RequestRecord(req, a.caller)); err != nil {
		return fmt.Errorf("admin %s of user %q refused: the audit log %s cannot record it: %w; nothing was changed", req.Op, req.User, a.logDir, err)
	}
	return nil
}

// record appends the admin event of req's outcome (opErr: the store
// refused it) to the audit log durably and returns opErr, or why the
// record could not be written.
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
	// The request was recorded before the change: a write failing now
	// is the disk failing.
	return &adminapi.UnrecordedError{Op: req.Op, Why: fmt.Sprintf("its outcome (user %q) could not be written to the audit log %s (%v); the request was recorded before it was made", req.User, a.logDir, err)}
}

// made reports whether err is that of a change that was made, its outcome
// unrecorded: its results are still shown, then the error.
func made(err error) bool {
	var ue *adminapi.UnrecordedError
	return errors.As(err, &ue)
}

func enrolment(en *auth.Enrolment) *adminapi.Enrolment {
	p := en.Key.Params
	return &adminapi.Enrolment{User: en.User, URI: en.URI, Secret: en.Key.Secret, Algorithm: string(p.Algorithm), Digits: p.Digits, Period: p.Period}
}

func (a storeAdmin) add(name string, password []byte, roles []string, secret []byte) (*adminapi.Enrolment, error) {
	req := adminapi.Request{Op: adminapi.OpUserAdd, User: name, Roles: roles, TOTPSecret: secret}
	if err := a.request(req); err != nil {
		return nil, err
	}
	en, err := a.st.AddUserWithSecret(name, password, roles, secret)
	if err := a.record(req, adminapi.Response{}, err); err != nil {
		if made(err) { // its outcome unrecorded: the enrolment is shown once
			return enrolment(en), err
		}
		return nil, err
	}
	return enrolment(en), nil
}

func (a storeAdmin) list() ([]auth.UserInfo, error) { return a.st.Users(), nil }

func (a storeAdmin) revoke(name string) (string, error) {
	req := adminapi.Request{Op: adminapi.OpRevokeUser, User: name, Reason: "admin revoke (otgate admin user revoke)"}
	if err := a.request(req); err != nil {
		return "", err
	}
	gen, err := a.st.Revoke(name, req.Reason)
	if err := a.record(req, adminapi.Response{}, err); err != nil {
		if made(err) {
			return fmt.Sprintf("credential generation now %d", gen), err
		}
		return "", err
	}
	return fmt.Sprintf("credential generation now %d", gen), nil
}

func (a storeAdmin) resetTOTP(name string) (*adminapi.Enrolment, error) {
	req := adminapi.Request{Op: adminapi.OpUserResetTOTP, User: name}
	if err := a.request(req); err != nil {
		return nil, err
	}
	en, err := a.st.ResetTOTP(name)
	if err := a.record(req, adminapi.Response{}, err); err != nil {
		if made(err) { // its outcome unrecorded: the enrolment is shown once
			return enrolment(en), err
		}
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
	if err := a.request(req); err != nil {
		return "", err
	}
	return "", a.record(req, adminapi.Response{}, c.do(name))
}
