package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/otgate/otgate/internal/bootcfg"
	"github.com/otgate/otgate/internal/syncbuf"

	"github.com/otgate/otgate/services/identity"
	"github.com/otgate/otgate/services/identity/api"
	"github.com/otgate/otgate/services/identity/swtpmtest"
)

// consoleWait is how long a test waits for a console line: READY arrives
// on its own pipe, and exec's copying goroutine may pass the console lines
// on after the test saw it.
const consoleWait = 10 * time.Second

// buildService builds this command once per test.
func buildService(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "otgate-identity")
	// Without cgo, as the image builds it (the service gives up its
	// capabilities on every thread, which a cgo binary cannot do).
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := build.CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// measure extends the boot measurement PCR as init does.
func measure(t *testing.T, sw *swtpmtest.TPM, what string) {
	t.Helper()
	tpm, err := identity.SocketTPM(sw.Socket).Open()
	if err != nil {
		t.Fatal(err)
	}
	defer tpm.Close()
	if err := identity.ExtendBootMeasurement(tpm, sha256.Sum256([]byte(what))); err != nil {
		t.Fatal(err)
	}
}

// start runs the service as init would (readiness through
// OTGATE_NOTIFY_FD) and waits for READY=1. It returns the console output
// so far and a stop function that sends SIGTERM and checks a clean exit.
func start(t *testing.T, bin string, args ...string) (console *syncbuf.Buffer, stop func()) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	console = &syncbuf.Buffer{}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "OTGATE_NOTIFY_FD=3")
	cmd.ExtraFiles = []*os.File{w}
	cmd.Stderr = console
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	readyc := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(r).ReadString('\n')
		if err == nil && line != "READY=1\n" {
			err = fmt.Errorf("notify line %q", line)
		}
		readyc <- err
	}()
	select {
	case err := <-readyc:
		if err != nil {
			cmd.Process.Kill()
			t.Fatalf("service not ready: %v\nconsole:\n%s", err, console)
		}
	case err := <-exited:
		t.Fatalf("service exited before ready: %v\nconsole:\n%s", err, console)
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("service not ready within 60s\nconsole:\n%s", console)
	}
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("service exit: %v\nconsole:\n%s", err, console)
			}
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			t.Errorf("service did not stop on SIGTERM")
		}
	}
	t.Cleanup(stop)
	return console, stop
}

// TestServiceBootsThenQuarantinesOnChangedMeasurement runs the real
// binary: first boot creates the identity; a reboot with the same
// measurement reuses it; a reboot with another measurement comes up in
// quarantine with a clear console line and refuses secrets.
func TestServiceBootsThenQuarantinesOnChangedMeasurement(t *testing.T) {
	bin := buildService(t)
	state := filepath.Join(t.TempDir(), "identity")
	sockDir, err := os.MkdirTemp("", "idsvc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	sock := filepath.Join(sockDir, "identity.sock")

	bootOnce := func(sw *swtpmtest.TPM, image string) (*syncbuf.Buffer, func(), *api.Client) {
		measure(t, sw, image)
		console, stop := start(t, bin, "-tpm-socket", sw.Socket, "-state", state, "-site", "plant.example",
			"-pcrs", "0,7", "-socket", sock, "-allow", fmt.Sprintf("%d=proxy", os.Getuid()), "-allow-volatile-state")
		// Its last start-up line: every line before it is in the console.
		if !console.WaitFor("identity: serving on ", consoleWait) {
			t.Fatalf("no serving line:\n%s", console)
		}
		c, err := api.Dial(sock)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return console, stop, c
	}

	sw := swtpmtest.Start(t, "")
	console, stop, c := bootOnce(sw, "image-A")
	if !strings.Contains(console.String(), "first boot") {
		t.Fatalf("no first-boot line:\n%s", console)
	}
	// It serves confined to its state directory, and the seal below (a
	// file written there) works under it.
	if want := "identity: files confined: read /proc /etc/localtime; write " + state + "\n"; !strings.Contains(console.String(), want) {
		t.Fatalf("no line %q:\n%s", want, console)
	}
	st, err := c.Status()
	if err != nil || st.Quarantine || st.DevMode || !strings.HasPrefix(st.DeviceURI, "spiffe://plant.example/gate/") {
		t.Fatalf("status after first boot: %+v, %v", st, err)
	}
	uri := st.DeviceURI
	if err := c.Seal("users", []byte("alice")); err != nil {
		t.Fatal(err)
	}
	c.Close()
	stop()
	sw.Stop()

	sw = swtpmtest.Start(t, sw.StateDir)
	console, stop, c = bootOnce(sw, "image-A")
	if strings.Contains(console.String(), "first boot") {
		t.Fatalf("identity re-created on reboot:\n%s", console)
	}
	if st, err := c.Status(); err != nil || st.DeviceURI != uri || st.Quarantine {
		t.Fatalf("status after reboot: %+v, %v (want %s, no quarantine)", st, err, uri)
	}
	if got, err := c.Unseal("users"); err != nil || string(got) != "alice" {
		t.Fatalf("unseal after reboot: %q, %v", got, err)
	}
	c.Close()
	stop()
	sw.Stop()

	sw = swtpmtest.Start(t, sw.StateDir)
	console, _, c = bootOnce(sw, "image-B (tampered)")
	if !strings.Contains(console.String(), "GATE IN QUARANTINE") || !strings.Contains(console.String(), "PCR 15") {
		t.Fatalf("no quarantine console line naming PCR 15:\n%s", console)
	}
	st, err = c.Status()
	if err != nil || !st.Quarantine || st.Remedy == "" {
		t.Fatalf("status in quarantine: %+v, %v", st, err)
	}
	if _, err := c.Unseal("users"); !errors.Is(err, api.ErrQuarantine) {
		t.Fatalf("unseal in quarantine: %v, want quarantine", err)
	}
	for _, l := range strings.Split(console.String(), "\n") {
		if strings.Contains(l, "QUARANTINE") {
			t.Logf("console: %s", l)
		}
	}
}

func TestServiceRefusesWithoutTPM(t *testing.T) {
	bin := buildService(t)
	out, err := exec.Command(bin, "-tpm", filepath.Join(t.TempDir(), "tpmrm0"), "-state", t.TempDir()+"/id",
		"-socket", t.TempDir()+"/s").CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || !strings.Contains(string(out), "no TPM") {
		t.Fatalf("without a TPM: err %v, output %q; want a refusal naming the missing TPM", err, out)
	}
	t.Logf("%s", out)
}

// The real binary on a TPM that held an identity whose state directory
// was lost: it exits with the named refusal and bootcfg.ExitNoRestart (a
// restart cannot help) and creates nothing; after
// `otgate identity reset` (identity.Reset) it starts with the new
// identity and logs, at that first start only, what it replaced.
func TestServiceRefusesLostStateThenLogsReset(t *testing.T) {
	bin := buildService(t)
	state := filepath.Join(t.TempDir(), "identity")
	sockDir, err := os.MkdirTemp("", "idsvc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	sock := filepath.Join(sockDir, "identity.sock")
	sw := swtpmtest.Start(t, "")
	args := []string{"-tpm-socket", sw.Socket, "-state", state, "-site", "plant.example",
		"-socket", sock, "-allow", fmt.Sprintf("%d=proxy", os.Getuid()), "-allow-volatile-state"}

	console, stop := start(t, bin, args...)
	if !console.WaitFor("identity: serving on ", consoleWait) {
		t.Fatalf("no serving line:\n%s", console)
	}
	stop()
	if err := os.RemoveAll(state); err != nil {
		t.Fatal(err)
	}

	out, err := exec.Command(bin, args...).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != bootcfg.ExitNoRestart || !strings.Contains(string(out), "identity: FATAL: identity: the TPM shows an earlier device identity") ||
		!strings.Contains(string(out), "otgate identity reset -yes") {
		t.Fatalf("restart without state: err %v, output %q; want the named refusal", err, out)
	}
	if strings.Contains(string(out), "first boot") {
		t.Fatalf("restart without state started a first boot:\n%s", out)
	}
	if _, err := os.Stat(state); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("refused start created %s: %v", state, err)
	}
	t.Logf("%s", out)

	if _, err := identity.Reset(identity.Config{StateDir: state, Site: "plant.example", TPM: identity.SocketTPM(sw.Socket), Log: &bytes.Buffer{}}); err != nil {
		t.Fatal(err)
	}
	console, stop = start(t, bin, args...)
	if !console.WaitFor("identity: serving on ", consoleWait) {
		t.Fatalf("no serving line:\n%s", console)
	}
	if !strings.Contains(console.String(), "identity: RESET: this device identity") || !strings.Contains(console.String(), "REPLACED an earlier one on ") {
		t.Fatalf("first start after the reset does not log it:\n%s", console)
	}
	stop()
	console, stop = start(t, bin, args...)
	if !console.WaitFor("identity: serving on ", consoleWait) {
		t.Fatalf("no serving line:\n%s", console)
	}
	stop()
	if strings.Contains(console.String(), "REPLACED") {
		t.Fatalf("second start logs the reset again:\n%s", console)
	}
}
