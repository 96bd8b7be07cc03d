package identity

import (
	"crypto"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/otgate/otgate/services/identity/api"
)

// ServerConfig says where the local API listens and who may use it.
type ServerConfig struct {
	// Socket path (api.DefaultSocket on the appliance).
	Socket string
	// GID owns the socket (mode 0660); -1 leaves the process's group.
	GID int
	// Allow maps the uids that may connect to the service name they act
	// as. Everyone else is refused after the SO_PEERCRED check.
	Allow map[uint32]string
}

// Server is the local API over a unix socket.
type Server struct {
	id    *Identity
	allow map[uint32]string
	ln    *net.UnixListener

	mu     sync.Mutex
	conns  map[net.Conn]bool
	closed bool
	wg     sync.WaitGroup
}

// Listen creates the socket (mode 0660, group cfg.GID) and returns a server
// ready to Serve.
func Listen(id *Identity, cfg ServerConfig) (*Server, error) {
	for uid, name := range cfg.Allow {
		if err := checkCallerName(name); err != nil {
			return nil, fmt.Errorf("identity: allow-list: uid %d: %w", uid, err)
		}
	}
	if err := os.Remove(cfg.Socket); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("identity: remove stale socket %s: %w", cfg.Socket, err)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: cfg.Socket, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("identity: listen on %s: %w", cfg.Socket, err)
	}
	// Until chmod the socket may be wider; SO_PEERCRED still guards it.
	if err := os.Chmod(cfg.Socket, 0o660); err != nil {
		ln.Close()
		return nil, fmt.Errorf("identity: chmod %s: %w", cfg.Socket, err)
	}
	if cfg.GID >= 0 {
		if err := os.Chown(cfg.Socket, -1, cfg.GID); err != nil {
			ln.Close()
			return nil, fmt.Errorf("identity: chown %s to gid %d: %w", cfg.Socket, cfg.GID, err)
		}
	}
	return &Server{id: id, allow: cfg.Allow, ln: ln, conns: map[net.Conn]bool{}}, nil
}

// Serve accepts connections until Close.
func (s *Server) Serve() error {
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return nil
			}
			return fmt.Errorf("identity: accept: %w", err)
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return nil
		}
		s.conns[c] = true
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			s.serveConn(c)
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
		}()
	}
}

// Close stops accepting, closes every connection and waits for them.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	err := s.ln.Close()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return err
}

// checkCallerName checks a service name of the allow-list. The identity
// service's own name is refused: its secrets hold the workload CA's key,
// which a caller known by that name could read or replace (unseal and
// seal act on the caller's own secrets).
func checkCallerName(name string) error {
	if !secretNameRE.MatchString(name) {
		return fmt.Errorf("bad service name %q (%s)", name, serviceNameDescription)
	}
	if name == identitySecretOwner {
		return fmt.Errorf("service name %q is the identity service's own (its secrets hold the workload CA key); give the caller its own name", name)
	}
	return nil
}

// peerCred reads the connecting process's credentials from the kernel.
func peerCred(c *net.UnixConn) (*unix.Ucred, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *unix.Ucred
	var serr error
	if err := raw.Control(func(fd uintptr) {
		cred, serr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return nil, err
	}
	return cred, serr
}

func (s *Server) allowed() string {
	var l []string
	for uid, n := range s.allow {
		l = append(l, fmt.Sprintf("%d=%s", uid, n))
	}
	sort.Strings(l)
	return strings.Join(l, ",")
}

func (s *Server) serveConn(c *net.UnixConn) {
	defer c.Close()
	cred, err := peerCred(c)
	if err != nil {
		s.id.log.Printf("refused a connection: cannot read peer credentials: %v", err)
		return
	}
	caller, ok := s.allow[cred.Uid]
	var why string
	switch {
	case !ok:
		why = fmt.Sprintf("uid %d may not use the identity service", cred.Uid)
		s.id.log.Printf("refused a connection from uid %d (pid %d): not in the allow-list (%s)", cred.Uid, cred.Pid, s.allowed())
	case cred.Uid == 0:
		err := rootWithAdmin(cred.Pid)
		if err == nil {
			err = stillConnected(c)
		}
		if err != nil {
			ok = false
			why = fmt.Sprintf("uid 0 (pid %d) may not use the identity service: %v", cred.Pid, err)
			s.id.log.Printf("refused a connection from uid 0 (pid %d): %v", cred.Pid, err)
		}
	}
	if !ok {
		// Answer, then read (and ignore) the first request before closing,
		// so the client reads the refusal instead of a broken pipe.
		c.SetDeadline(time.Now().Add(5 * time.Second))
		api.WriteMessage(c, &api.Response{Code: api.CodeDenied, Error: why})
		var ignored api.Request
		api.ReadMessage(c, &ignored)
		return
	}
	for {
		var req api.Request
		if err := api.ReadMessage(c, &req); err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				s.id.log.Printf("connection from %s (uid %d): %v", caller, cred.Uid, err)
				// A frame that does not decode, one over the limit or one
				// cut short: say so (the stream cannot be followed after
				// it, so the connection ends). A broken connection just
				// fails the write.
				c.SetWriteDeadline(time.Now().Add(5 * time.Second))
				api.WriteMessage(c, &api.Response{Code: api.CodeBadRequest,
					Error: fmt.Sprintf("bad request from %s (uid %d): %v; connection closed", caller, cred.Uid, err)})
			}
			return
		}
		rsp := s.handle(caller, cred.Uid, &req)
		if err := api.WriteMessage(c, rsp); err != nil {
			return
		}
	}
}

// rootWithAdmin tells a root administrator (the CLI, init's one-shot
// steps: full capabilities) from one of the gate's own root services,
// which run as uid 0 too but keep a few capabilities, never
// CAP_SYS_ADMIN (internal/sandbox). Those have no business with the
// identity: a compromised one (timesync and netconf read the network)
// must not sign with the device key or seal the data key to another
// boot. The peer's effective capabilities are read from
// /proc/<pid>/status as the connection is taken; a process cannot gain
// capabilities after its start under no_new_privs. stillConnected then
// checks that the pid was still the caller's.
func rootWithAdmin(pid int32) error {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return fmt.Errorf("cannot read its capabilities: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		v, found := strings.CutPrefix(line, "CapEff:")
		if !found {
			continue
		}
		eff, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		if err != nil {
			return fmt.Errorf("its CapEff %q: %w", strings.TrimSpace(v), err)
		}
		if eff&(1<<unix.CAP_SYS_ADMIN) == 0 {
			return fmt.Errorf("it lacks CAP_SYS_ADMIN (effective %016x): a gate service, not an administrator", eff)
		}
		return nil
	}
	return fmt.Errorf("no CapEff in /proc/%d/status", pid)
}

// stillConnected checks, after rootWithAdmin read /proc/<pid>/status,
// that the caller still holds its end of the connection. SO_PEERCRED's
// pid is the connecting process's; once that process has exited its pid
// may be another's, and the capabilities read were not the caller's. A
// process's descriptors close when it exits, before its pid is freed, so
// an end still open means the pid was the caller's when its status was
// read: no other process can hold that end, since the gate's root
// services make no other process (sandbox.KeepToItself), and the
// administrator's tools are trusted. A caller that closed its end is
// refused (POLLHUP: both directions shut, which a process's exit does); one
// that only shut its writing side (a request cut short, say) still holds
// it.
func stillConnected(c *net.UnixConn) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var revents int16
	var perr error
	if err := raw.Control(func(fd uintptr) {
		fds := []unix.PollFd{{Fd: int32(fd)}}
		for {
			_, perr = unix.Poll(fds, 0)
			if perr != unix.EINTR {
				break
			}
		}
		revents = fds[0].Revents
	}); err != nil {
		return err
	}
	if perr != nil {
		return fmt.Errorf("cannot tell whether it is still connected: %w", perr)
	}
	if revents&(unix.POLLHUP|unix.POLLERR) != 0 {
		return fmt.Errorf("it closed its end of the connection before its capabilities were read (revents %#x): its pid may be another process's by now", revents)
	}
	return nil
}

func errResponse(code string, err error) *api.Response {
	return &api.Response{Code: code, Error: err.Error()}
}

func (s *Server) dataKeyError(err error) *api.Response {
	switch {
	case errors.Is(err, ErrQuarantine):
		return errResponse(api.CodeQuarantine, err)
	case errors.Is(err, ErrSecretNotFound):
		return errResponse(api.CodeNotFound, err)
	case errors.Is(err, ErrSecretLimit):
		return errResponse(api.CodeBadRequest, err)
	default:
		return errResponse(api.CodeInternal, err)
	}
}

func anchorError(err error) *api.Response {
	switch {
	case errors.Is(err, ErrNoAnchor):
		return errResponse(api.CodeNoTPM, err)
	case errors.Is(err, ErrQuarantine):
		return errResponse(api.CodeQuarantine, err)
	default:
		return errResponse(api.CodeInternal, err)
	}
}

func (s *Server) handle(caller string, uid uint32, req *api.Request) *api.Response {
	id := s.id
	// In quarantine only status is served: every other operation either
	// needs the data key or vouches for the gate (sign, tls-cert,
	// workload-cert), and an image the data key was not sealed to must not
	// do either. Deny by default: an operation added later is refused too.
	// seal-next-boot checks its caller and request first and is refused
	// by SealNextBoot (no data key).
	if req.Op != api.OpStatus && req.Op != api.OpSealNextBoot {
		if err := id.refuseInQuarantine(req.Op); err != nil {
			return errResponse(api.CodeQuarantine, err)
		}
	}
	switch req.Op {
	case api.OpStatus:
		st := &api.Status{DeviceURI: DeviceURI(id.Site(), id.Serial()).String(), Serial: id.Serial(), DevMode: id.dev, Caller: caller}
		if end, warnings := id.DeviceCertificateStatus(); !end.IsZero() {
			st.CertNotAfter, st.CertWarnings = end.Unix(), warnings
		}
		if q := id.Quarantine(); q != nil {
			st.Quarantine, st.Reason, st.Remedy, st.RemedyShort = true, q.Reason, q.Remedy, q.RemedyShort
		}
		return &api.Response{Status: st}
	case api.OpSignMessage:
		h := crypto.Hash(req.Hash)
		if err := checkSignRequest(req.Data, h); err != nil {
			// Said on the console too: the gate's own callers never ask
			// for anything else, so this is a defect or a compromise.
			s.id.log.Printf("refused to sign for %s (uid %d): %v", caller, uid, err)
			return errResponse(api.CodeBadRequest, err)
		}
		sig, err := id.SignMessage(req.Data, h)
		if err != nil {
			return s.dataKeyError(err)
		}
		return &api.Response{Signature: sig}
	case api.OpTLSCert:
		return &api.Response{Certs: id.DeviceCertificate()}
	case api.OpSeal, api.OpUnseal:
		if !secretNameRE.MatchString(req.Name) {
			return errResponse(api.CodeBadRequest, fmt.Errorf("bad secret name %q (%s)", req.Name, serviceNameDescription))
		}
		if req.Op == api.OpSeal {
			if err := id.SealSecret(caller, req.Name, req.Data); err != nil {
				return s.dataKeyError(err)
			}
			return &api.Response{}
		}
		data, err := id.UnsealSecret(caller, req.Name)
		if err != nil {
			return s.dataKeyError(err)
		}
		return &api.Response{Data: data}
	case api.OpWorkloadCert:
		// The bound is checked on the seconds asked for: multiplied first,
		// a huge value wrapped around into the range.
		if req.TTLSeconds <= 0 || req.TTLSeconds > int64(MaxWorkloadCertTTL/time.Second) {
			return errResponse(api.CodeBadRequest, fmt.Errorf("workload certificate lifetime %ds out of range (0, %d]", req.TTLSeconds, int64(MaxWorkloadCertTTL/time.Second)))
		}
		ttl := time.Duration(req.TTLSeconds) * time.Second
		leaf, ca, err := id.IssueWorkloadCertificate(caller, req.CSR, ttl)
		if err != nil {
			if errors.Is(err, ErrQuarantine) {
				return s.dataKeyError(err)
			}
			return errResponse(api.CodeBadRequest, err)
		}
		return &api.Response{Certs: [][]byte{leaf, ca}}
	case api.OpSealNextBoot:
		if uid != 0 {
			return errResponse(api.CodeDenied, fmt.Errorf("%s is for root (an authorized policy apply); uid %d (%s) may not", req.Op, uid, caller))
		}
		if len(req.Digest) != 32 {
			return errResponse(api.CodeBadRequest, fmt.Errorf("boot measurement digest is %d bytes, want 32", len(req.Digest)))
		}
		if err := id.SealNextBoot([32]byte(req.Digest)); err != nil {
			return s.dataKeyError(err)
		}
		return &api.Response{}
	case api.OpAuditAnchor:
		v, defined, err := id.AuditAnchor()
		if err != nil {
			return anchorError(err)
		}
		return &api.Response{Anchor: &api.Anchor{Value: v, Defined: defined}}
	case api.OpAdvanceAuditAnchor:
		// The log it anchors is the proxy's; another caller advancing it
		// would only raise a false alarm, but has no business doing so.
		if caller != "proxy" {
			return errResponse(api.CodeDenied, fmt.Errorf("%s is for the proxy, whose audit log it anchors; %s may not", req.Op, caller))
		}
		v, err := id.AdvanceAuditAnchor(req.Anchor, req.AnchorDefined)
		if err != nil {
			return anchorError(err)
		}
		return &api.Response{Anchor: &api.Anchor{Value: v, Defined: true}}
	default:
		return errResponse(api.CodeBadRequest, fmt.Errorf("unknown operation %q", req.Op))
	}
}
