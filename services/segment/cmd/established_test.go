package main_test

import (
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/otgate/otgate/services/segment"
	"github.com/otgate/otgate/services/segment/internal/nslab"
)

// The proxy's sessions do not depend on segment's process: an
// established connection of the proxy's identity to an asset carries data
// while segment is killed and after each restart (its ruleset stays in the
// kernel and is replaced in one batch), and another uid stays refused
// throughout. This is why init does not restart the proxy when segment
// restarts.
func TestEstablishedProxyConnSurvivesSegmentRestart(t *testing.T) {
	l := nslab.New(t)
	bin := buildBinary(t, ".", "otgate-segment")
	var ln net.Listener
	if err := l.Plant.Do(func() (err error) { ln, err = net.Listen("tcp4", nslab.Asset1+":502"); return }); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go io.Copy(c, c)
		}
	}()
	dir := t.TempDir()
	specPath, sock := filepath.Join(dir, "segment.cbor"), filepath.Join(dir, "segment.sock")
	if err := segment.WriteSpec(specPath, testSpec(time.Now().Add(time.Hour))); err != nil {
		t.Fatal(err)
	}
	s := start(t, l, bin, specPath, sock, "200ms")
	c, err := l.Gate.Dial(nslab.Asset1+":502", proxy, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rt := func(what string) {
		c.SetDeadline(time.Now().Add(3 * time.Second))
		if _, err := c.Write([]byte("ping")); err != nil {
			t.Fatalf("%s: write: %v", what, err)
		}
		b := make([]byte, 4)
		if _, err := io.ReadFull(c, b); err != nil {
			t.Fatalf("%s: read: %v", what, err)
		}
	}
	rt("before")
	if ok, _ := l.Gate.Reach(nslab.Asset1+":502", other, 500*time.Millisecond); ok {
		t.Fatal("other uid reaches the asset: ruleset not in force")
	}
	for i := 0; i < 5; i++ {
		s.kill()
		rt("segment down")
		s = start(t, l, bin, specPath, sock, "200ms")
		rt("segment restarted")
	}
	if ok, _ := l.Gate.Reach(nslab.Asset1+":502", other, 500*time.Millisecond); ok {
		t.Fatal("other uid reaches the asset after restarts")
	}
}
