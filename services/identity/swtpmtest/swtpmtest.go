// Package swtpmtest runs a software TPM (swtpm) for tests: a fresh state
// directory per test unless one is given, the process killed in t.Cleanup.
package swtpmtest

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TPM is one running swtpm.
type TPM struct {
	// Socket is the TPM command socket (swtpm --server type=unixio).
	Socket string
	// StateDir is swtpm's --tpmstate directory; start another TPM on it
	// to simulate a reboot (PCRs reset, keys and NV kept).
	StateDir string
	cmd      *exec.Cmd
	done     chan struct{}
}

// Start starts swtpm on stateDir ("" for a fresh directory). It skips the
// test when swtpm is not installed.
func Start(tb testing.TB, stateDir string) *TPM {
	tb.Helper()
	bin, err := exec.LookPath("swtpm")
	if err != nil {
		tb.Skip("swtpm not installed (apt-get install swtpm): skipping TPM test")
	}
	if stateDir == "" {
		stateDir = tb.TempDir()
	}
	// A short directory: unix socket paths are limited to 107 bytes.
	sockDir, err := os.MkdirTemp("", "swtpm")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(sockDir) })
	sock := filepath.Join(sockDir, "s")
	cmd := exec.Command(bin, "socket", "--tpm2",
		"--tpmstate", "dir="+stateDir,
		"--server", "type=unixio,path="+sock,
		"--ctrl", "type=unixio,path="+filepath.Join(sockDir, "c"),
		"--flags", "not-need-init,startup-clear")
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start swtpm: %v", err)
	}
	s := &TPM{Socket: sock, StateDir: stateDir, cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(s.done) }()
	tb.Cleanup(s.Stop)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(sock); err == nil {
			return s
		} else if !errors.Is(err, os.ErrNotExist) {
			tb.Fatal(err)
		}
		select {
		case <-s.done:
			tb.Fatalf("swtpm exited before creating %s", sock)
		default:
		}
		if time.Now().After(deadline) {
			tb.Fatalf("swtpm did not create %s within 30s", sock)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Stop kills swtpm and waits for it; safe to call twice. swtpm saves its
// permanent state as it goes, so a new Start on StateDir sees the same
// TPM, with PCRs reset as after a reboot.
func (s *TPM) Stop() {
	s.cmd.Process.Kill()
	<-s.done
}
