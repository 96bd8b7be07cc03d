package qemu

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// swtpm is a running software TPM serving one VM.
type swtpm struct {
	cmd    *exec.Cmd
	socket string
	stderr *bytes.Buffer
	done   chan struct{}
}

// startSwtpm starts `swtpm socket --tpm2` with its state in stateDir and its
// control socket in dir, and waits until the socket exists.
func startSwtpm(ctx context.Context, stateDir, dir string) (*swtpm, error) {
	bin, err := exec.LookPath("swtpm")
	if err != nil {
		return nil, fmt.Errorf("qemu: WithTPM needs swtpm (Debian package swtpm): %w", err)
	}
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return nil, fmt.Errorf("qemu: TPM state directory %s: %w", stateDir, err)
	}
	sock := filepath.Join(dir, "swtpm.sock")
	s := &swtpm{socket: sock, stderr: &bytes.Buffer{}, done: make(chan struct{})}
	s.cmd = exec.Command(bin, "socket", "--tpm2",
		"--tpmstate", "dir="+stateDir,
		"--ctrl", "type=unixio,path="+sock,
		"--log", "file="+filepath.Join(dir, "swtpm.log"))
	s.cmd.Stdout = s.stderr
	s.cmd.Stderr = s.stderr
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("qemu: start swtpm: %w", err)
	}
	go func() { _ = s.cmd.Wait(); close(s.done) }()
	for {
		if _, err := os.Stat(sock); err == nil {
			return s, nil
		}
		select {
		case <-s.done:
			return nil, fmt.Errorf("qemu: swtpm (state %s) exited before creating %s: %s", stateDir, sock, s.stderr.String())
		case <-ctx.Done():
			s.stop()
			return nil, fmt.Errorf("qemu: waiting for swtpm socket %s: %w", sock, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// stop ends swtpm (it normally exits on its own when QEMU disconnects) and
// waits for it.
func (s *swtpm) stop() {
	select {
	case <-s.done:
		return
	case <-time.After(2 * time.Second):
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
		return
	case <-time.After(5 * time.Second):
	}
	_ = s.cmd.Process.Kill()
	<-s.done
}

// pid is swtpm's process id.
func (s *swtpm) pid() int { return s.cmd.Process.Pid }
