package qemu

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// slowSwtpm puts on PATH an swtpm that is slow to get ready: given a
// control socket path it binds it and waits 3 s before listening (the
// window real swtpm has between the two, stretched), and in any case
// waits 1 s before it starts the real swtpm with its arguments.
func slowSwtpm(t *testing.T) {
	t.Helper()
	real, err := exec.LookPath("swtpm")
	if err != nil {
		t.Skip("swtpm not installed (make test installs it)")
	}
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		t.Skip("no /usr/bin/python3")
	}
	dir := t.TempDir()
	script := `#!/usr/bin/python3
import os, re, socket, sys, time
for a in sys.argv[1:]:
    m = re.search(r"type=unixio,path=([^,]+)", a)
    if m:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(m.group(1))
        time.sleep(3)
        s.close()
        os.unlink(m.group(1))
time.sleep(1)
os.execv(` + "'" + real + "'" + `, [` + "'" + real + "'" + `] + sys.argv[1:])
`
	if err := os.WriteFile(filepath.Join(dir, "swtpm"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
}

// The control socket accepts QEMU's connection as soon as startSwtpm
// returns, however late swtpm gets to listen on it: QEMU connects once
// and gives up at once on "Connection refused". (Waiting for the socket
// file to appear returned between swtpm's bind and its listen.)
func TestSwtpmSocketAcceptsAtOnce(t *testing.T) {
	slowSwtpm(t)
	dir := t.TempDir()
	s, err := startSwtpm(filepath.Join(dir, "state"), dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.stop()
	c, err := net.DialTimeout("unix", s.socket, time.Second)
	if err != nil {
		t.Fatalf("connect to swtpm's control socket right after startSwtpm: %v", err)
	}
	defer c.Close()
	// swtpm answers on that connection once it is up: CMD_GET_CAPABILITY
	// (1) returns a result code (0) and the capability bits.
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := c.Write([]byte{0, 0, 0, 1}); err != nil {
		t.Fatal(err)
	}
	var rsp [8]byte
	if _, err := io.ReadFull(c, rsp[:]); err != nil {
		t.Fatalf("swtpm's answer to CMD_GET_CAPABILITY: %v", err)
	}
	if rc := binary.BigEndian.Uint32(rsp[:4]); rc != 0 {
		t.Fatalf("CMD_GET_CAPABILITY: result %#x", rc)
	}
}

// A VM whose swtpm is slow to start still boots with its TPM.
func TestBootWithSlowSwtpm(t *testing.T) {
	b := mustBoard(t, "qemu-x86_64")
	requireQEMU(t, b, "swtpm")
	img := testImage(t, b)
	slowSwtpm(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	vm := StartT(t, b, "", img, WithTPM(filepath.Join(t.TempDir(), "tpm")))
	line, err := vm.WaitFor(ctx, "testinit: tpm")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(line, "/dev/tpm0") {
		t.Fatalf("guest lacks its TPM: %q", line)
	}
	if exit, err := vm.Wait(ctx); err != nil || !exit.CleanPowerOff() {
		t.Fatalf("want a clean power-off, got %v %v", exit, err)
	}
}

// A boot held up by its TPM explains itself: QEMU talks to swtpm
// synchronously, so a stopped swtpm freezes the guest before it prints
// anything (what a 0-byte serial log with QEMU running looks like).
// WaitFor's error then names swtpm's state and the console's silence.
func TestWaitForDiagnosesAStalledTPM(t *testing.T) {
	b := mustBoard(t, "qemu-x86_64")
	requireQEMU(t, b, "swtpm")
	img := testImage(t, b)
	vm := StartT(t, b, "", img, WithTPM(filepath.Join(t.TempDir(), "tpm")))
	pid := vm.TPMPID()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGCONT) })
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	_, err := vm.WaitFor(ctx, "testinit: up")
	if err == nil {
		t.Fatal("the guest came up with its TPM stopped")
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want a timeout, got %v", err)
	}
	t.Logf("%v", err)
	for _, re := range []string{
		`qemu: qemu-x86_64 pid \d+, started \S+ ago; console: \d+ bytes`,
		`swtpm: pid \d+, 1 threads:\n  \d+ swtpm +T \(STOPPED\) cpu `,
		`qemu: pid \d+, \d+ threads:`,
		`swtpm: log .*swtpm\.log ends:`,
	} {
		if !regexp.MustCompile(re).MatchString(err.Error()) {
			t.Errorf("the error does not match /%s/", re)
		}
	}
}
