package identity

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// startSWTPM starts a fresh swtpm with its own state directory and returns
// an opener for its socket. The process is killed in t.Cleanup. stateDir
// may be given to restart a TPM on existing state ("" for a fresh one).
func startSWTPM(tb testing.TB, stateDir string) (TPMOpener, string) {
	tb.Helper()
	bin, err := exec.LookPath("swtpm")
	if err != nil {
		tb.Skip("swtpm not installed (apt-get install swtpm): skipping TPM test")
	}
	if stateDir == "" {
		stateDir = tb.TempDir()
	}
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
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	tb.Cleanup(func() {
		cmd.Process.Kill()
		<-done
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(sock); err == nil {
			break
		} else if !errors.Is(err, os.ErrNotExist) {
			tb.Fatal(err)
		}
		select {
		case <-done:
			tb.Fatalf("swtpm exited before creating %s", sock)
		default:
		}
		if time.Now().After(deadline) {
			tb.Fatalf("swtpm did not create %s within 30s", sock)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return SocketTPM(sock), stateDir
}

// testConfig is a TPM-mode configuration with a fresh state directory.
func testConfig(tb testing.TB, tpm TPMOpener) Config {
	return Config{
		StateDir:  filepath.Join(tb.TempDir(), "identity"),
		Site:      "plant-1.example",
		TPM:       tpm,
		BoardPCRs: []uint{0, 7},
		Create:    true,
		Log:       testWriter{tb},
	}
}

type testWriter struct{ tb testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.tb.Logf("%s", p)
	return len(p), nil
}
