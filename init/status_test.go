package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/otgate/otgate/internal/bootcfg"
	"github.com/otgate/otgate/internal/initstatus"
	"golang.org/x/sys/unix"
)

// A client that streams a huge request (a CBOR text string that claims a
// gigabyte) does not get PID 1 to read and buffer it: init stops reading
// after a few KiB, answers, and hangs up; it goes on answering others.
func TestHostInitStatusBoundsRequest(t *testing.T) {
	core := svc("core", bootcfg.ReadyNotify, "-mode=steady")
	core.Critical = true
	h := runHostInit(t, writeRoot(t, &bootcfg.Config{Services: []bootcfg.Service{core}}), "")
	h.wait(t, "init: ready (")
	h.dial(t)
	conn, err := net.Dial("unix", h.socket())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(waitTimeout))
	// A map {"op"-ish key: text string of 1 GiB}: header 0x7a + 4-byte length.
	if _, err := conn.Write([]byte{0xa1, 0x01, 0x7a, 0x40, 0x00, 0x00, 0x00}); err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 64<<10)
	for i := range chunk {
		chunk[i] = 'a'
	}
	const limit = 16 << 20
	sent := 0
	for sent < limit {
		n, err := conn.Write(chunk)
		sent += n
		if err != nil {
			break
		}
	}
	if sent >= limit {
		t.Fatalf("init read %d MiB of one status request", sent>>20)
	}
	if st, err := h.dial(t).Status(); err != nil || !st.Ready {
		t.Fatalf("status after the hostile request: %+v, %v", st, err)
	}
}

// A request that is too big, or is not a request, gets an answer that
// says what is wrong with it: the limit, or where the decoding failed.
func TestStatusBadRequestSaysWhat(t *testing.T) {
	in := &initProc{log: newLogger(io.Discard), cfg: &bootcfg.Config{}}
	big, err := initstatus.EncMode().Marshal(map[string]string{"op": initstatus.OpStatus, "pad": strings.Repeat("x", 2*maxRequest)})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		req  []byte
		want string
	}{
		{"too big", big, fmt.Sprintf("bad request: larger than %d bytes", maxRequest)},
		{"not a map", []byte{0x18, 0x2a}, "bad request: cbor: cannot unmarshal positive integer"},
		{"cut short", big[:100], "bad request: request ends after 100 bytes, inside a CBOR item"},
		{"empty", nil, "bad request: empty (the connection ended before a request)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, s := unixPair(t)
			go in.answer(s)
			c.SetDeadline(time.Now().Add(waitTimeout))
			go func() {
				c.Write(tc.req)
				c.CloseWrite()
			}()
			var resp initstatus.Response
			if err := initstatus.DecMode().NewDecoder(c).Decode(&resp); err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(resp.Error, tc.want) {
				t.Fatalf("answer %q, want it to start %q", resp.Error, tc.want)
			}
		})
	}
}

// unixPair is a connected pair of unix stream sockets.
func unixPair(t *testing.T) (*net.UnixConn, net.Conn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	var conns [2]net.Conn
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "socketpair")
		conns[i], err = net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conns[i].Close() })
	}
	return conns[0].(*net.UnixConn), conns[1]
}
