package client

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"

	"github.com/otgate/otgate/services/proxy/wire"
)

// endingGate accepts each tunnel as session "s1", echoes one byte, and
// then ends the session on the notice stream ("ended ... by the gate")
// while the tunnel's connection stays open: the gate's close of the
// tunnel did not come through (a middlebox that dropped its state, a
// half-open connection). It returns when the tunnel's connection closes
// on the client's side.
func endingGate(t *testing.T) (addr, pin string, tunnelClosed <-chan struct{}) {
	t.Helper()
	cert := selfSigned(t, "gate")
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert},
		NextProtos: []string{wire.ALPNNotices, wire.ALPNTunnel}, ClientAuth: tls.RequireAnyClientCert})
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	t.Cleanup(func() { ln.Close(); close(stop) })
	notices := make(chan wire.Notice, 4)
	closed := make(chan struct{}, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				tc := c.(*tls.Conn)
				if tc.Handshake() != nil {
					return
				}
				if tc.ConnectionState().NegotiatedProtocol == wire.ALPNNotices {
					wire.WriteFrame(tc, wire.Notice{Kind: wire.NoticeHello, User: "alice"})
					for {
						select {
						case n := <-notices:
							wire.WriteFrame(tc, n)
						case <-stop:
							return
						}
					}
				}
				if _, err := wire.ReadHeader(tc); err != nil {
					return
				}
				wire.WriteFrame(tc, wire.Reply{Accept: true, Rule: "night-shift", Session: "s1", Until: time.Now().Add(time.Hour).Unix()})
				b := make([]byte, 1)
				if _, err := io.ReadFull(tc, b); err != nil {
					return
				}
				tc.Write(b)
				notices <- wire.Notice{Kind: wire.NoticeEnded, Session: "s1", Reason: "revoked by an administrator", ByGate: true}
				// The session is over, but this connection is not
				// closed: only the client can end it now.
				tc.Read(make([]byte, 1))
				closed <- struct{}{}
			}()
		}
	}()
	return ln.Addr().String(), Fingerprint(cert.Leaf), closed
}

// TestEndedNoticeClosesTheLocalConnection: when the gate says a session
// ended, the local tool's connection of that session is closed (after
// endedGrace), also when the gate's own close of the tunnel never comes
// through: the tool sees the end instead of waiting on a dead session.
// The listener keeps serving: a new connection is a new session, which
// the gate decides afresh.
func TestEndedNoticeClosesTheLocalConnection(t *testing.T) {
	addr, pin, tunnelClosed := endingGate(t)
	cert := selfSigned(t, "alice")
	s := &Session{Profile: &Profile{Gate: addr, Pin: pin}, cert: &cert, resume: tls.NewLRUClientSessionCache(8)}
	streamUp := make(chan struct{}, 4)
	notices := make(chan wire.Notice, 4)
	f := &Forwarder{Session: s, Asset: "plc-7", Protocol: "modbus",
		OnNoticeStream: func(err error) {
			if err == nil {
				streamUp <- struct{}{}
			}
		},
		OnNotice: func(_ *wire.Reply, n wire.Notice) { notices <- n }}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Serve(ctx, ln) }()
	defer func() { cancel(); <-done }()
	select {
	case <-streamUp:
	case <-time.After(10 * time.Second):
		t.Fatal("the notice stream did not come up")
	}
	session := func() net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
			t.Fatalf("echo through the tunnel: %v", err)
		}
		return c
	}
	c := session()
	select {
	case n := <-notices:
		if n.Kind != wire.NoticeEnded {
			t.Fatalf("notice %+v, want the ended notice", n)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the ended notice did not come")
	}
	start := time.Now()
	c.SetReadDeadline(time.Now().Add(endedGrace + 5*time.Second))
	n, err := c.Read(make([]byte, 1))
	if err == nil {
		t.Fatalf("the local connection read %d bytes after the session ended", n)
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("the local connection is still open %v after the gate said its session ended: the tool would wait on a dead session", time.Since(start).Round(time.Millisecond))
	}
	select {
	case <-tunnelClosed:
	case <-time.After(5 * time.Second):
		t.Error("the tunnel's connection to the gate is still open after the session ended")
	}
	// The listener still serves: the next connection is a new session.
	session()
}
