package main

import (
	"net"
	"testing"
	"time"

	"github.com/otgate/otgate/internal/bootcfg"
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
