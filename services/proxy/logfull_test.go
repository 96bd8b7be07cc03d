package proxy

import (
	"crypto"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/otgate/otgate/audit"
)

// smallLogGate starts a gate in l whose audit log is on a 256 KiB tmpfs
// (mounted at mnt), for tests of what the gate does when its log fails.
func smallLogGate(t *testing.T, l *lab) (g *gate, mnt string, log *audit.Writer) {
	t.Helper()
	mnt = t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount a tmpfs for the log: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	g = newGate(t, l, func(c *Config) {
		w, err := audit.Open(filepath.Join(mnt, "audit"), c.Certificate.PrivateKey.(crypto.Signer))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { w.Close() })
		log, c.Log = w, w
	})
	return g, mnt, log
}

// fillLogDisk fills the log's tmpfs: another file takes every free block,
// then records of another session take the last partial block of the log
// file, until the log fails.
func fillLogDisk(t *testing.T, mnt string, log *audit.Writer) {
	t.Helper()
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
			return
		}
		if i == 10000 {
			t.Fatal("the log never filled")
		}
	}
}

// waitGateLine waits up to 30 s for a line of the gate's output that
// contains want, and returns it from want on.
func waitGateLine(t *testing.T, g *gate, want string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		g.out.mu.Lock()
		out := g.out.b.String()
		g.out.mu.Unlock()
		if i := strings.Index(out, want); i >= 0 {
			line := out[i:]
			if j := strings.IndexByte(line, '\n'); j >= 0 {
				line = line[:j]
			}
			return line
		}
		if time.Now().After(deadline) {
			t.Fatalf("no line with %q in the gate's log:\n%s", want, out)
		}
		sleepMs(20)
	}
}
