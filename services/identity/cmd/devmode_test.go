package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/otgate/otgate/services/identity/api"
)

// The real binary in dev mode (no TPM, as a board with TPM.None runs
// it): every line it logs, at start, from the server's goroutines (a
// refused connection) and at stop, carries "DEV MODE"; a fatal error
// too. The same binary with the same TPM device path but without -dev
// refuses to start (TestServiceRefusesWithoutTPM).
func TestServiceDevModeMarksEveryLogLine(t *testing.T) {
	bin := buildService(t)
	sockDir, err := os.MkdirTemp("", "idsvc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	sock := filepath.Join(sockDir, "identity.sock")
	state := filepath.Join(t.TempDir(), "identity")
	// An allow-list without this test's uid: the connection below is
	// refused, and the server logs it.
	other := os.Geteuid() + 1
	console, stop := start(t, bin, "-dev", "-tpm", filepath.Join(t.TempDir(), "tpmrm0"), "-state", state, "-socket", sock,
		"-allow", fmt.Sprintf("%d=proxy", other))
	c, err := api.Dial(sock)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Status(); err == nil {
		t.Fatalf("status from a uid not in the allow-list: %v, want refused", err)
	}
	c.Close()
	if !console.WaitFor("refused a connection", consoleWait) {
		t.Fatalf("no refused-connection line:\n%s", console)
	}
	stop()
	if !console.WaitFor("stopping", consoleWait) {
		t.Fatalf("no stop line:\n%s", console)
	}
	lines := strings.Split(strings.TrimSpace(console.String()), "\n")
	if len(lines) < 4 {
		t.Fatalf("%d console lines, want the start, serving, refusal and stop lines:\n%s", len(lines), console)
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, "DEV MODE: identity: ") {
			t.Errorf("log line without the DEV MODE prefix: %q", l)
		}
	}

	// A fatal error in dev mode (a bad -pcrs value) is marked too.
	out, err := exec.Command(bin, "-dev", "-state", state, "-socket", sock, "-pcrs", "99").CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || !strings.HasPrefix(string(out), "DEV MODE: identity: FATAL: ") {
		t.Fatalf("fatal error in dev mode: %v, output %q; want a FATAL line with the DEV MODE prefix", err, out)
	}
}
