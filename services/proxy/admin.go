package proxy

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/otgate/otgate/audit"
	"github.com/otgate/otgate/services/proxy/adminapi"
	"github.com/otgate/otgate/services/proxy/wire"
)

// AdminServer serves the admin socket: root only (SO_PEERCRED). Every
// call that may change something is recorded in the audit log before it
// acts, naming the caller (uid, pid, command), and is refused with
// nothing changed when that record cannot be written; its outcome is
// recorded after (see call). A refused caller is an "admin-refused"
// event.
type AdminServer struct {
	srv *Server
	ln  *net.UnixListener
	// AllowUID is the uid allowed besides root (tests); -1: root only.
	allowUID int
	// acting, when set (tests), runs after a change's request record is
	// written and before the change is made.
	acting func(adminapi.Request)
}

// ListenAdmin creates the admin socket at path (mode 0600).
func (s *Server) ListenAdmin(path string) (*AdminServer, error) {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("proxy admin: remove stale socket %s: %w", path, err)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("proxy admin: listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("proxy admin: chmod %s: %w", path, err)
	}
	return &AdminServer{srv: s, ln: ln, allowUID: -1}, nil
}

// Close stops the admin socket.
func (a *AdminServer) Close() error { return a.ln.Close() }

// Serve accepts admin connections until Close.
func (a *AdminServer) Serve() error {
	for {
		c, err := a.ln.AcceptUnix()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		go a.serveConn(c)
	}
}

func (a *AdminServer) serveConn(c *net.UnixConn) {
	defer c.Close()
	s := a.srv
	peer := adminapi.Caller{UID: -1, PID: -1}
	raw, err := c.SyscallConn()
	var cred *unix.Ucred
	cerr := err
	if err == nil {
		raw.Control(func(fd uintptr) { cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) })
	}
	if cerr == nil {
		peer.UID, peer.PID = int(cred.Uid), int(cred.Pid)
		peer.Comm = adminapi.Comm(peer.PID)
	}
	if cerr != nil || (peer.UID != 0 && peer.UID != a.allowUID) {
		why := "not root"
		if cerr != nil {
			why = fmt.Sprintf("peer credentials unavailable: %v", cerr)
		}
		// Fail closed, and say who knocked: a non-root process that
		// reaches the socket at all means its permissions are wrong.
		s.cfg.Logf("proxy: admin socket: refused %s: %s", peer, why)
		s.event(audit.Event{Type: adminapi.EventAdminRefused, Reason: fmt.Sprintf("%s: %s", peer, why)})
		wire.WriteFrame(c, adminapi.Response{Error: fmt.Sprintf("permission denied: uid %d is not root", peer.UID)})
		return
	}
	for {
		c.SetDeadline(time.Now().Add(5 * time.Minute))
		var req adminapi.Request
		if err := wire.ReadFrame(c, &req); err != nil {
			if !errors.Is(err, io.EOF) {
				wire.WriteFrame(c, adminapi.Response{Error: err.Error()})
			}
			return
		}
		rsp := a.call(req, peer)
		if err := wire.WriteFrame(c, rsp); err != nil {
			return
		}
	}
}

// call answers req. A call that may change something (all but the
// listings) is recorded before it acts, as an audit log records a
// request before it is served (write-ahead): when that "admin-request"
// record cannot be written durably the call is refused and nothing
// changes, so no change is made that the log does not hold. Its outcome,
// done or refused, is the "admin" record after (adminapi.Record); when
// that one cannot be written the answer says so (Response.Unrecorded)
// beside the call's results.
func (a *AdminServer) call(req adminapi.Request, peer adminapi.Caller) adminapi.Response {
	if !adminapi.Changes(req.Op) {
		return a.handle(req)
	}
	if err := a.srv.event(adminapi.RequestRecord(req, peer)); err != nil {
		return adminapi.Response{Error: fmt.Sprintf("refused: the audit log cannot record the call (%v); nothing was changed", err)}
	}
	if a.acting != nil {
		a.acting(req)
	}
	rsp := a.handle(req)
	if err := a.srv.event(adminapi.Record(req, rsp, peer)); err != nil {
		rsp.Unrecorded = fmt.Sprintf("its outcome could not be written to the audit log (%v); the request was recorded before it was made", err)
	}
	return rsp
}

func (a *AdminServer) handle(req adminapi.Request) adminapi.Response {
	s := a.srv
	why := req.Reason
	if why == "" {
		why = "admin"
	}
	var n int
	var err error
	switch req.Op {
	case adminapi.OpSessions:
		var out []adminapi.Session
		for _, x := range s.Sessions() {
			var until int64
			if !x.Until.IsZero() {
				until = x.Until.UnixNano()
			}
			out = append(out, adminapi.Session{ID: x.ID, User: x.User, Serial: x.Serial, Asset: x.Asset, Protocol: x.Protocol,
				Source: x.Source, Rule: x.Rule, Monitor: x.Monitor, Started: x.Started.UnixNano(), Until: until,
				BytesToAsset: x.BytesToAsset, BytesToClient: x.BytesToClient, IdleNanos: int64(x.Idle)})
		}
		return adminapi.Response{Sessions: out}
	case adminapi.OpRevokeUser:
		n, err = s.RevokeUser(req.User, why)
	case adminapi.OpRevokeSerial:
		n, err = s.RevokeSerial(req.User, req.Serial, why)
	case adminapi.OpReload:
		var r Reloaded
		if r, err = s.Reload(); err != nil {
			s.cfg.Logf("proxy: admin reload (%s): %v", why, err)
			break
		}
		src := s.Policy().Source
		s.cfg.Logf("proxy: admin reload (%s): policy reloaded from %s, %s", why, src, r)
		return adminapi.Response{Ended: r.Ended, Moved: r.Moved, Policy: src}
	case adminapi.OpUnlock:
		err = s.Unlock(req.User)
	case adminapi.OpUserAdd, adminapi.OpUserList, adminapi.OpUserDisable, adminapi.OpUserEnable,
		adminapi.OpUserRemove, adminapi.OpUserResetTOTP:
		return a.handleUser(req)
	default:
		err = fmt.Errorf("unknown operation %q", req.Op)
	}
	if err != nil {
		return adminapi.Response{Error: err.Error(), Ended: n}
	}
	return adminapi.Response{Ended: n}
}
