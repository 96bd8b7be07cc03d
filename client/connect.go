package client

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/otgate/otgate/services/proxy/wire"
)

// WarnBefore is how long before a session's end the forwarder warns.
const WarnBefore = time.Minute

// Forwarder turns each local TCP connection into its own tunnel to the
// gate naming Asset and Protocol.
type Forwarder struct {
	Session  *Session
	Asset    string
	Protocol string
	// OnTunnel is told about each tunnel: the gate's reply, or the error.
	OnTunnel func(local net.Addr, reply *wire.Reply, err error)
	// OnWarn is told WarnBefore (or less, if sooner) ahead of a session's
	// end, and OnEnd when a tunnel closes.
	OnWarn func(reply *wire.Reply, left time.Duration)
	OnEnd  func(reply *wire.Reply)
}

// Serve accepts on ln until ctx ends or ln fails.
func (f *Forwarder) Serve(ctx context.Context, ln net.Listener) error {
	go func() { <-ctx.Done(); ln.Close() }()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			f.forward(ctx, c)
		}()
	}
}

func (f *Forwarder) forward(ctx context.Context, local net.Conn) {
	defer local.Close()
	remote, reply, err := f.Session.Tunnel(ctx, f.Asset, f.Protocol)
	if f.OnTunnel != nil {
		f.OnTunnel(local.RemoteAddr(), reply, err)
	}
	if err != nil {
		return
	}
	defer remote.Close()
	if until := reply.UntilTime(); !until.IsZero() && f.OnWarn != nil {
		left := time.Until(until)
		t := time.AfterFunc(max(left-WarnBefore, 0), func() { f.OnWarn(reply, time.Until(until)) })
		defer t.Stop()
	}
	Splice(local, remote)
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
