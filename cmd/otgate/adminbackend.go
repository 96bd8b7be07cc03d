//go:build !windows

package main

import (
	"fmt"
	"time"

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

// storeAdmin opens the user store itself (--direct).
type storeAdmin struct {
	st   *auth.Store
	site string
}

func (a storeAdmin) where() string { return " (gate " + a.site + ")" }

func enrolment(en *auth.Enrolment) *adminapi.Enrolment {
	p := en.Key.Params
	return &adminapi.Enrolment{User: en.User, URI: en.URI, Secret: en.Key.Secret, Algorithm: string(p.Algorithm), Digits: p.Digits, Period: p.Period}
}

func (a storeAdmin) add(name string, password []byte, roles []string, secret []byte) (*adminapi.Enrolment, error) {
	en, err := a.st.AddUserWithSecret(name, password, roles, secret)
	if err != nil {
		return nil, err
	}
	return enrolment(en), nil
}

func (a storeAdmin) list() ([]auth.UserInfo, error) { return a.st.Users(), nil }

func (a storeAdmin) revoke(name string) (string, error) {
	gen, err := a.st.Revoke(name, "admin revoke (otgate admin user revoke)")
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("credential generation now %d", gen), nil
}

func (a storeAdmin) resetTOTP(name string) (*adminapi.Enrolment, error) {
	en, err := a.st.ResetTOTP(name)
	if err != nil {
		return nil, err
	}
	return enrolment(en), nil
}

func (a storeAdmin) change(op, name string) (string, error) {
	switch op {
	case "unlock":
		return "", a.st.Unlock(name)
	case "disable":
		return "", a.st.Disable(name)
	case "enable":
		return "", a.st.Enable(name)
	case "remove":
		return "", a.st.RemoveUser(name)
	}
	return "", fmt.Errorf("admin user: unknown change %q", op)
}
