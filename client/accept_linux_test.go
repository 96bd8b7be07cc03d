package client

import (
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Out of file descriptors, accept fails (EMFILE: a tool that opens many
// connections, macOS's 256): Serve waits and accepts the connection once
// descriptors are free again, rather than ending connect with every
// session it carries.
func TestServeOutlivesTooManyOpenFiles(t *testing.T) {
	addr, pin := oldGate(t, time.Hour)
	cert := selfSigned(t, "alice")
	s := &Session{Profile: &Profile{Gate: addr, Pin: pin}, cert: &cert}
	failed := make(chan error, 100)
	stream := make(chan error, 4)
	f := &Forwarder{Session: s, Asset: "plc-7", Protocol: "modbus",
		OnAcceptError:  func(err error, _ time.Duration) { failed <- err },
		OnNoticeStream: func(err error) { stream <- err }}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Serve(ctx, ln) }()
	defer func() { cancel(); <-done }()
	// The gate (this process, with the same limit) has told the notice
	// stream it has none before the limit falls.
	select {
	case err := <-stream:
		if !errors.Is(err, ErrNoticesUnsupported) {
			t.Fatalf("notice stream: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no word on the notice stream")
	}

	// Nothing may free a descriptor while the limit is low: one freed
	// then lets the accept succeed and the tunnel's dial fail (the local
	// connection is then closed, and the echo below reads nothing). The
	// gate's side of the refused notice stream closes after the client
	// has seen the refusal: wait until the descriptor table holds still.
	fdsSettle(t)
	// The local client's socket exists before the limit falls; then no
	// descriptor is left for the accepted connection.
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	free := 0
	for ; ; free++ {
		if _, err := unix.FcntlInt(uintptr(free), unix.F_GETFD, 0); err != nil {
			break
		}
	}
	low := lim
	low.Cur = uint64(free)
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	restored := false
	restore := func() {
		if !restored {
			restored = true
			if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
				t.Fatal(err)
			}
		}
	}
	defer restore()
	port := ln.Addr().(*net.TCPAddr).Port
	if err := unix.Connect(fd, &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-failed:
		t.Logf("accept failed: %v", err)
	case err := <-done:
		done <- err // for the deferred wait
		restore()
		t.Fatalf("Serve ended out of file descriptors: %v", err)
	case <-time.After(10 * time.Second):
		restore()
		t.Fatal("accept did not fail with the descriptors all taken")
	}
	restore()
	// Accepted now: the tunnel echoes.
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 10})
	if _, err := unix.Write(fd, []byte("x")); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	if n, err := unix.Read(fd, b); n != 1 || err != nil || b[0] != 'x' {
		t.Fatalf("echo through the tunnel after the accept failed: %d %q, %v", n, b, err)
	}
	select {
	case err := <-done:
		done <- err
		t.Fatalf("Serve ended: %v", err)
	default:
	}
}

// fdsSettle waits until this process's open descriptors have stayed the
// same for 300 ms (at most 10 s).
func fdsSettle(t *testing.T) {
	t.Helper()
	list := func() string {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		for _, e := range ents {
			b.WriteString(e.Name() + " ")
		}
		return b.String()
	}
	prev, same := list(), 0
	for deadline := time.Now().Add(10 * time.Second); same < 3 && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		if cur := list(); cur == prev {
			same++
		} else {
			prev, same = cur, 0
		}
	}
}
