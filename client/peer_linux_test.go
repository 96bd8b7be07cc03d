package client

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/otgate/otgate/services/proxy/wire"
)

// On a shared workstation another user can connect to the loopback
// listener: the forwarder refuses such a connection (it would carry it
// under this user's credential) and serves this user's own, over IPv4
// and IPv6 loopback.
func TestForwarderRefusesOtherUsersConnections(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to connect as another user")
	}
	addr, pin := oldGate(t, time.Hour)
	cert := selfSigned(t, "alice")
	s := &Session{Profile: &Profile{Gate: addr, Pin: pin}, cert: &cert}
	type result struct {
		reply *wire.Reply
		err   error
	}
	results := make(chan result, 8)
	f := &Forwarder{Session: s, Asset: "plc-7", Protocol: "modbus",
		OnTunnel: func(_ net.Addr, r *wire.Reply, err error) { results <- result{r, err} }}
	for _, network := range []string{"127.0.0.1:0", "[::1]:0"} {
		t.Run(network, func(t *testing.T) {
			ln, err := net.Listen("tcp", network)
			if err != nil {
				t.Skipf("no %s: %v", network, err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- f.Serve(ctx, ln) }()
			defer func() { cancel(); <-done }()
			host, port, _ := net.SplitHostPort(ln.Addr().String())

			// A process of uid 65534 (nobody) connects and waits.
			other := exec.Command("/bin/bash", "-c", "exec 3<>/dev/tcp/"+host+"/"+port+"; echo connected; cat <&3")
			other.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
			out, err := other.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := other.Start(); err != nil {
				t.Fatal(err)
			}
			waitErr := make(chan error, 1)
			go func() { _, _ = io.ReadAll(out); waitErr <- other.Wait() }()
			var oue *OtherUserError
			select {
			case r := <-results:
				if !errors.As(r.err, &oue) || oue.UID != 65534 || !strings.Contains(r.err.Error(), "uid 65534") {
					t.Fatalf("another user's connection: %+v %v, want an OtherUserError for uid 65534", r.reply, r.err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("no verdict on another user's connection")
			}
			// Closed by the forwarder: the other user's cat sees EOF.
			select {
			case <-waitErr:
			case <-time.After(10 * time.Second):
				other.Process.Kill()
				t.Fatal("another user's connection was not closed")
			}

			// This user's own connection gets its tunnel.
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			select {
			case r := <-results:
				if r.err != nil || r.reply == nil || !r.reply.Accept {
					t.Fatalf("own connection: %+v %v, want the gate's acceptance", r.reply, r.err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("no tunnel for this user's connection")
			}
		})
	}
}

// A process of another user that connects, writes its request and closes
// at once leaves its socket orphaned: the kernel's table lists it with
// uid 0 and no inode, which is not root's. The forwarder refuses such a
// connection rather than carry the request under this user's credential.
func TestForwarderRefusesConnectionsClosedBeforeTheCheck(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to connect as another user")
	}
	addr, pin := oldGate(t, time.Hour)
	cert := selfSigned(t, "alice")
	s := &Session{Profile: &Profile{Gate: addr, Pin: pin}, cert: &cert}
	type result struct {
		reply *wire.Reply
		err   error
	}
	results := make(chan result, 8)
	f := &Forwarder{Session: s, Asset: "plc-7", Protocol: "modbus",
		OnTunnel: func(_ net.Addr, r *wire.Reply, err error) { results <- result{r, err} }}
	for _, network := range []string{"127.0.0.1:0", "[::1]:0"} {
		t.Run(network, func(t *testing.T) {
			ln, err := net.Listen("tcp", network)
			if err != nil {
				t.Skipf("no %s: %v", network, err)
			}
			host, port, _ := net.SplitHostPort(ln.Addr().String())
			// uid 65534 connects (the kernel completes the handshake
			// before any accept), writes and is gone before Serve runs.
			other := exec.Command("/bin/bash", "-c", "exec 3<>/dev/tcp/"+host+"/"+port+"; printf x >&3; exec 3>&-")
			other.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
			if out, err := other.CombinedOutput(); err != nil {
				t.Fatalf("connect as uid 65534: %v: %s", err, out)
			}
			// Once the peer's delayed ACK of its FIN has come (40 to
			// 200 ms), the orphaned socket is listed as uid 0.
			time.Sleep(500 * time.Millisecond)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- f.Serve(ctx, ln) }()
			defer func() { cancel(); <-done }()
			select {
			case r := <-results:
				if r.err == nil || !strings.Contains(r.err.Error(), "closed before its owner could be checked") {
					t.Fatalf("another user's closed connection: %+v %v, want it refused", r.reply, r.err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("no verdict on another user's closed connection")
			}
		})
	}
}
