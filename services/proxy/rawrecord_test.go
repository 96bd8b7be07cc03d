package proxy

import (
	"fmt"
	"io"
	"strings"
	"testing"
	"time"
)

// TestRawChunkNotForwardedWhenTheLogFails: on a raw (uninspected) stream
// a chunk from the client is recorded before it goes to the asset. The
// gate's audit log is on a small tmpfs that fills up during a session;
// the client's next chunk cannot be recorded: the asset (a real TCP peer
// in the plant namespace) never receives it, the connection ends, and
// the gate gives the reason (audit log failed).
func TestRawChunkNotForwardedWhenTheLogFails(t *testing.T) {
	l := newLab(t)
	// The asset echoes the first message, then keeps what it receives
	// until the gate closes the connection.
	ln := l.listenPlant(t, 7)
	received := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		first := make([]byte, len("hello"))
		if _, err := io.ReadFull(c, first); err != nil {
			received <- nil
			return
		}
		c.Write(first)
		rest, _ := io.ReadAll(c)
		received <- append(first, rest...)
	}()
	g, mnt, log := smallLogGate(t, l)
	g.setGrants(grant{rule: "alice-echo", user: "alice", asset: "echo-1", protocol: "tcp"})
	alice := g.mustLogin("alice")
	c, r, err := tunnel(t, alice, "echo-1", "tcp")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	echoRoundTrip(t, c, "hello")
	fillLogDisk(t, mnt, log)
	if _, err := c.Write([]byte("unrecorded")); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, c, 30*time.Second)
	select {
	case got := <-received:
		if string(got) != "hello" {
			t.Fatalf("the asset received %q; want %q alone (the next chunk's record failed)", got, "hello")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the gate did not close the asset connection")
	}
	line := waitGateLine(t, g, fmt.Sprintf("proxy: session %s of alice to echo-1/tcp ended: audit log failed: ", r.Session))
	if !strings.Contains(line, "no space left on device") || !strings.Contains(line, "(5 bytes to asset") {
		t.Fatalf("end %q: want the log's error, and only the recorded chunk counted to the asset", line)
	}
	t.Logf("%s", line)
}
