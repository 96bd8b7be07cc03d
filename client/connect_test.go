package client

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/otgate/otgate/services/proxy/wire"
)

// A local tool that keeps its connection open does not hold Serve once
// its context ends (Ctrl-C at otgate connect): the tunnel is closed.
func TestServeEndsWithOpenTunnels(t *testing.T) {
	addr, pin := oldGate(t, time.Hour)
	cert := selfSigned(t, "alice")
	s := &Session{Profile: &Profile{Gate: addr, Pin: pin}, cert: &cert}
	ended := make(chan struct{}, 1)
	f := &Forwarder{Session: s, Asset: "plc-7", Protocol: "modbus"}
	f.OnEnd = func(*wire.Reply) { ended <- struct{}{} }
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Serve(ctx, ln) }()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatalf("echo through the tunnel: %v", err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve still runs 5 s after its context ended, held by an open tunnel")
	}
	select {
	case <-ended:
	default:
		t.Error("the tunnel did not end")
	}
	c.SetReadDeadline(time.Now().Add(time.Second))
	if n, err := c.Read(make([]byte, 1)); err == nil {
		t.Errorf("the local connection still reads (%d bytes)", n)
	}
}

// silentGate completes the TLS handshake of tunnels and notice streams,
// reads a tunnel's header, and never answers (a gate still dialling a
// slow asset, a wedged gate). Each header read is sent on the channel.
func silentGate(t *testing.T) (addr, pin string, headers <-chan struct{}) {
	t.Helper()
	cert := selfSigned(t, "gate")
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert},
		NextProtos: []string{wire.ALPNNotices, wire.ALPNTunnel}, ClientAuth: tls.RequireAnyClientCert})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); close(done) })
	got := make(chan struct{}, 16)
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
				if tc.ConnectionState().NegotiatedProtocol == wire.ALPNTunnel {
					if _, err := wire.ReadHeader(tc); err != nil {
						return
					}
					got <- struct{}{}
				}
				<-done
			}()
		}
	}()
	return ln.Addr().String(), Fingerprint(cert.Leaf), got
}

// Ctrl-C at otgate connect ends it at once, also while a tunnel waits for
// the gate's answer and the notice stream for the gate's hello: neither
// holds Serve for its 30 s timeout.
func TestServeEndsWhileTheGateHasNotAnswered(t *testing.T) {
	addr, pin, headers := silentGate(t)
	cert := selfSigned(t, "alice")
	s := &Session{Profile: &Profile{Gate: addr, Pin: pin}, cert: &cert}
	f := &Forwarder{Session: s, Asset: "plc-7", Protocol: "modbus"}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Serve(ctx, ln) }()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case <-headers:
	case <-time.After(10 * time.Second):
		t.Fatal("the tunnel's header did not reach the gate")
	}
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(25 * time.Second):
		t.Fatal("Serve still runs 25 s after its context ended, held by a tunnel or notice stream waiting for the gate")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Serve ended %v after its context, want at once", d.Round(time.Millisecond))
	}
}

// Serve ended by its listener (closed, or failing), not by its context,
// leaves no goroutine of its own behind: a program that serves again
// with a context that never ends (a GUI's) does not pile them up.
func TestServeEndedByItsListenerLeavesNoGoroutine(t *testing.T) {
	addr, pin := oldGate(t, time.Hour)
	cert := selfSigned(t, "alice")
	s := &Session{Profile: &Profile{Gate: addr, Pin: pin}, cert: &cert}
	f := &Forwarder{Session: s, Asset: "plc-7", Protocol: "modbus"}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- f.Serve(context.Background(), ln) }()
	time.Sleep(100 * time.Millisecond)
	ln.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Serve on a closed listener returned no error")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve still runs 10 s after its listener closed")
	}
	var left string
	for range 100 {
		var b strings.Builder
		pprof.Lookup("goroutine").WriteTo(&b, 1)
		if left = b.String(); !strings.Contains(left, "(*Forwarder).Serve") {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("goroutines of Serve left after it returned:\n%s", left)
}
