package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/otgate/otgate/services/proxy/wire"
)

// WarnBefore is how long before a session's end the forwarder warns
// with local timers; the gate's warnings come at its own lead (also one
// minute unless configured otherwise).
const WarnBefore = time.Minute

// Forwarder turns each local TCP connection into its own tunnel to the
// gate naming Asset and Protocol.
type Forwarder struct {
	Session  *Session
	Asset    string
	Protocol string
	// OnTunnel is told about each tunnel: the gate's reply, or the error.
	OnTunnel func(local net.Addr, reply *wire.Reply, err error)
	// OnWarn is told ahead of a session's end: by the gate's warning
	// notice when the notice stream is up (again when a reload moved the
	// deadline), else by a local timer WarnBefore (or less, if sooner)
	// ahead of the deadline last known. reply carries that deadline.
	OnWarn func(reply *wire.Reply, left time.Duration)
	// OnEnd is told when a tunnel closes (after the gate's ended notice,
	// if one comes within two seconds).
	OnEnd func(reply *wire.Reply)
	// OnNotice is told each notice the gate pushes about this forwarder's
	// sessions (deadline, warning, ended: see wire.Notice); reply is the
	// session's reply with the deadline as known before this notice. An
	// ended notice also closes the session's local connection and its
	// tunnel, endedGrace later unless the gate's close ended them first.
	OnNotice func(reply *wire.Reply, n wire.Notice)
	// OnNoticeStream is told when the notice stream (one per Serve) comes
	// up (nil), or why it is not up: ErrNoticesUnsupported (an older
	// gate: local timers warn, said once), a *NoticesClosedError (the
	// gate closed it: credential revoked or expired), or a lost stream
	// that is being reopened.
	OnNoticeStream func(err error)
	// OnAcceptError is told of a failed accept that Serve waits out
	// (too many open files) before accepting again.
	OnAcceptError func(err error, wait time.Duration)
	// WarnBefore overrides the package's WarnBefore for local timers.
	WarnBefore time.Duration
	// FollowLogin: a new login with the session's profile, for the same
	// gate and user, gives new tunnels (and a notice stream the gate
	// closed) its credential (Session.Follow), looked for before each
	// tunnel and every FollowEvery; tunnels open already keep theirs
	// until the gate ends them. OnCredential hears of each switch, or of
	// a stored credential not taken (a *NotFollowedError).
	FollowLogin  bool
	OnCredential func(sw *CredentialSwitch, err error)
	// FollowEvery overrides the package's FollowEvery.
	FollowEvery time.Duration

	watch *noticeWatch
}

// FollowEvery is how often a Forwarder with FollowLogin looks for a new
// login between tunnels.
const FollowEvery = 2 * time.Second

// follow takes a new login's credential (FollowLogin).
func (f *Forwarder) follow() {
	if !f.FollowLogin {
		return
	}
	sw, err := f.Session.Follow()
	if sw == nil && err == nil {
		return
	}
	if f.OnCredential != nil {
		f.OnCredential(sw, err)
	}
	if sw != nil {
		f.watch.credentialChanged()
	}
}

// Serve accepts on ln until ctx ends or ln fails. When ctx ends, the
// tunnels it opened are closed too.
func (f *Forwarder) Serve(ctx context.Context, ln net.Listener) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	// ctx ending closes ln; Serve ending otherwise (ln failed) ends this
	// watch, which would else wait for ctx for ever.
	stopClose := context.AfterFunc(ctx, func() { ln.Close() })
	defer stopClose()
	// The notice stream ends with Serve, however Serve ends.
	nctx, cancel := context.WithCancel(ctx)
	defer cancel()
	f.watch = newNoticeWatch(f)
	wg.Add(1)
	go func() {
		defer wg.Done()
		f.watch.run(nctx)
	}()
	if f.FollowLogin {
		every := f.FollowEvery
		if every <= 0 {
			every = FollowEvery
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(every)
			defer t.Stop()
			for {
				select {
				case <-nctx.Done():
					return
				case <-t.C:
					f.follow()
				}
			}
		}()
	}
	var wait time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if !acceptAgain(err) {
				return err
			}
			// Out of file descriptors (a tool opening many connections;
			// macOS allows 256): wait and accept again, as net/http
			// does, rather than end every session with connect.
			wait = min(max(2*wait, 5*time.Millisecond), time.Second)
			if f.OnAcceptError != nil {
				f.OnAcceptError(err, wait)
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(wait):
			}
			continue
		}
		wait = 0
		wg.Add(1)
		go func() {
			defer wg.Done()
			f.forward(ctx, c)
		}()
	}
}

// acceptAgainErrs are the errors of acceptAgain (Windows adds its own).
var acceptAgainErrs = []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED}

// acceptAgain says whether an accept error passes (the process or the
// system out of file descriptors or memory, a connection reset before it
// was accepted) rather than ending the listener.
func acceptAgain(err error) bool {
	for _, e := range acceptAgainErrs {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// OtherUserError refuses a local connection from a process of another
// user: it would reach the asset under this user's credential.
type OtherUserError struct {
	Peer     net.Addr
	UID, Own int
}

func (e *OtherUserError) Error() string {
	return fmt.Sprintf("connection from %s refused: it comes from a process of uid %d, not of this user (uid %d); the tunnel would carry it under your credential", e.Peer, e.UID, e.Own)
}

// errPeerClosed is peerUID's answer for a connecting socket its process
// has closed already: its owner can no longer be told.
var errPeerClosed = errors.New("the connecting socket is closed")

// checkPeer refuses a local connection whose other end belongs to
// another user (root excepted, who can read the credential anyway): on a
// shared engineering workstation or jump host, anyone may connect to a
// loopback port. Where the system cannot tell (not Linux), the
// connection is served, as ssh -L does.
func checkPeer(local net.Conn) error {
	uid, ok, err := peerUID(local)
	if errors.Is(err, errPeerClosed) {
		return fmt.Errorf("connection from %s refused: it was closed before its owner could be checked (the system no longer says whose it was)", local.RemoteAddr())
	}
	if err != nil {
		return fmt.Errorf("connection from %s refused: its owner could not be checked: %w", local.RemoteAddr(), err)
	}
	if !ok {
		if runtime.GOOS == "linux" {
			return fmt.Errorf("connection from %s refused: no socket of it in the kernel's table (gone already?)", local.RemoteAddr())
		}
		return nil
	}
	if own := os.Getuid(); uid != own && uid != 0 {
		return &OtherUserError{Peer: local.RemoteAddr(), UID: uid, Own: own}
	}
	return nil
}

func (f *Forwarder) forward(ctx context.Context, local net.Conn) {
	defer local.Close()
	if err := checkPeer(local); err != nil {
		if f.OnTunnel != nil {
			f.OnTunnel(local.RemoteAddr(), nil, err)
		}
		return
	}
	f.follow()
	remote, reply, err := f.Session.Tunnel(ctx, f.Asset, f.Protocol)
	if f.OnTunnel != nil {
		f.OnTunnel(local.RemoteAddr(), reply, err)
	}
	if err != nil {
		return
	}
	defer remote.Close()
	// Serve's end (Ctrl-C at otgate connect) ends the sessions it
	// carries: a tool that keeps its connection open must not hold it.
	stop := context.AfterFunc(ctx, func() {
		local.Close()
		remote.Close()
	})
	defer stop()
	// The gate's ended notice closes both too (after endedGrace), should
	// the gate's own close of the tunnel not come through.
	tr := f.watch.track(reply, func() {
		local.Close()
		remote.Close()
	})
	Splice(local, remote)
	f.watch.done(tr)
	if f.OnEnd != nil {
		f.OnEnd(reply)
	}
}

// Splice copies both ways until both are done, half-closing as each side
// finishes; once one way is done the other gets a few seconds to drain.
func Splice(local net.Conn, remote *tls.Conn) {
	done := make(chan struct{}, 2)
	go func() {
		io.Copy(local, remote)
		if tc, ok := local.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
		done <- struct{}{}
	}()
	go func() {
		_, err := io.Copy(remote, local)
		if err == nil || errors.Is(err, io.EOF) {
			remote.CloseWrite()
		}
		done <- struct{}{}
	}()
	<-done
	select {
	case <-done:
	case <-time.After(5 * time.Second):
	}
	local.Close()
	remote.Close()
}
