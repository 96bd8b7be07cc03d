package proxy

import (
	"crypto"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/otgate/otgate/audit"
)

// TestRawChunkNotForwardedWhenTheLogFails: on a raw (uninspected) stream
// a chunk from the client is recorded before it goes to the asset. The
// gate's audit log is on a small tmpfs that fills up during a session;
// the client's next chunk cannot be recorded: the asset (a real TCP peer
// in the plant namespace) never receives it, the connection ends, and
// the gate gives the reason (audit log failed).
func TestRawChunkNotForwardedWhenTheLogFails(t *testing.T) {
	l := newLab(t)
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount a tmpfs for the log: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
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
	var log *audit.Writer
	g := newGate(t, l, func(c *Config) {
		w, err := audit.Open(filepath.Join(mnt, "audit"), c.Certificate.PrivateKey.(crypto.Signer))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { w.Close() })
		log, c.Log = w, w
	})
	g.setGrants(grant{rule: "alice-echo", user: "alice", asset: "echo-1", protocol: "tcp"})
	alice := g.mustLogin("alice")
	c, r, err := tunnel(t, alice, "echo-1", "tcp")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	echoRoundTrip(t, c, "hello")
	// The disk fills: another file takes every free block, then other
	// records take the last partial block of the log file.
	filler, err := os.Create(filepath.Join(mnt, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	for _, err = filler.Write(make([]byte, 4096)); err == nil; _, err = filler.Write(make([]byte, 4096)) {
	}
	filler.Close()
	for i := 0; ; i++ {
		if _, err := log.AppendBuffered(audit.Payload{SessionID: "other", Direction: audit.ToAsset, Bytes: 64, Raw: make([]byte, 64)}); err != nil {
			t.Logf("the log fails after %d more records: %v", i, err)
			break
		}
		if i == 10000 {
			t.Fatal("the log never filled")
		}
	}
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
	deadline := time.Now().Add(30 * time.Second)
	want := fmt.Sprintf("proxy: session %s of alice to echo-1/tcp ended: audit log failed: ", r.Session)
	for {
		g.out.mu.Lock()
		out := g.out.b.String()
		g.out.mu.Unlock()
		if i := strings.Index(out, want); i >= 0 {
			line := out[i:]
			line = line[:strings.IndexByte(line, '\n')]
			if !strings.Contains(line, "no space left on device") || !strings.Contains(line, "(5 bytes to asset") {
				t.Fatalf("end %q: want the log's error, and only the recorded chunk counted to the asset", line)
			}
			t.Logf("%s", line)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no session end with %q in the gate's log:\n%s", want, out)
		}
		sleepMs(20)
	}
}
