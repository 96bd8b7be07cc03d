package qemu

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// swtpmLogLevel is swtpm's --log level: 2 names each control-channel
// command QEMU sends (init, locality, established flag, shutdown) and the
// errors, so that a stalled boot's swtpm.log (in Diagnose) says what the
// TPM was last asked; 5 and more would dump every TPM command too.
const swtpmLogLevel = 2

// swtpm is a running software TPM serving one VM.
type swtpm struct {
	cmd    *exec.Cmd
	socket string
	log    string
	stderr *tailBuffer
	done   chan struct{}
}

// startSwtpm starts `swtpm socket --tpm2` with its state in stateDir and its
// control socket in dir. The harness creates the control socket and hands
// it to swtpm already listening (--ctrl fd=3): QEMU's connection can never
// be refused, however late swtpm gets to its accept (waiting for the socket
// file to appear left a window between swtpm's bind and its listen, in
// which QEMU's connect failed with "Connection refused").
func startSwtpm(stateDir, dir string) (*swtpm, error) {
	bin, err := exec.LookPath("swtpm")
	if err != nil {
		return nil, fmt.Errorf("qemu: WithTPM needs swtpm (Debian package swtpm): %w", err)
	}
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return nil, fmt.Errorf("qemu: TPM state directory %s: %w", stateDir, err)
	}
	sock := filepath.Join(dir, "swtpm.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("qemu: swtpm control socket: %w", err)
	}
	// The socket file stays until the VM's directory is removed; the
	// listener's descriptor goes to swtpm.
	ln.SetUnlinkOnClose(false)
	lf, err := ln.File()
	ln.Close()
	if err != nil {
		return nil, fmt.Errorf("qemu: swtpm control socket: %w", err)
	}
	// Only swtpm may hold the listening socket once it runs: if it dies,
	// QEMU's pending connection must see the reset, not wait forever on
	// a socket this process keeps open.
	defer lf.Close()
	s := &swtpm{socket: sock, log: filepath.Join(dir, "swtpm.log"), stderr: &tailBuffer{max: 8 << 10}, done: make(chan struct{})}
	s.cmd = exec.Command(bin, "socket", "--tpm2",
		"--tpmstate", "dir="+stateDir,
		"--ctrl", "type=unixio,fd=3",
		"--log", fmt.Sprintf("file=%s,level=%d", s.log, swtpmLogLevel))
	s.cmd.ExtraFiles = []*os.File{lf}
	s.cmd.Stdout = s.stderr
	s.cmd.Stderr = s.stderr
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("qemu: start swtpm: %w", err)
	}
	go func() { _ = s.cmd.Wait(); close(s.done) }()
	return s, nil
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

// exited describes how swtpm ended, or "" while it runs.
func (s *swtpm) exited() string {
	select {
	case <-s.done:
		return s.cmd.ProcessState.String()
	default:
		return ""
	}
}

// logTail returns the last n lines of swtpm's log file (read from its
// last 16 KiB: a long run's log may be large).
func (s *swtpm) logTail(n int) string {
	f, err := os.Open(s.log)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "(no log)"
		}
		return err.Error()
	}
	defer f.Close()
	const window = 16 << 10
	var off int64
	if st, err := f.Stat(); err == nil && st.Size() > window {
		off = st.Size() - window
	}
	b := make([]byte, window)
	k, err := f.ReadAt(b, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return err.Error()
	}
	return tailLines(strings.TrimRight(string(b[:k]), "\n"), n)
}
