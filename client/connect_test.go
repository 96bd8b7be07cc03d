package client

import (
	"context"
	"io"
	"net"
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
