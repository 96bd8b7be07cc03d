//go:build !windows

package main

import (
	"bufio"
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestConnectWithExpiredCredential: connect with a certificate that has
// expired says so and how to log in again, before it listens (with
// --protocol it asks the gate nothing first).
func TestConnectWithExpiredCredential(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "profile")
	end := time.Now().Add(-time.Minute).Truncate(time.Second)
	expiredProfile(t, dir, "127.0.0.1:1", end)
	done := make(chan error, 1)
	go func() {
		done <- runConnect([]string{"plc-7", "--protocol", "modbus", "--profile", dir}, io.Discard, io.Discard)
	}()
	select {
	case err := <-done:
		want := "your credential for 127.0.0.1:1 expired at " + end.Local().Format("2006-01-02 15:04:05 MST") +
			": log in again with otgate login --profile " + shellQuote(dir) + " 127.0.0.1:1"
		if err == nil || err.Error() != want {
			t.Fatalf("connect with an expired credential: %v, want %q", err, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("connect with an expired credential is still running: it listens although every tunnel will be refused")
	}
}

// TestConnectWithRevokedCredential: a credential the gate refuses (here
// revoked by a logout) makes connect say to log in again: when it asks
// the gate for the asset's protocol, and for each tunnel refused.
func TestConnectWithRevokedCredential(t *testing.T) {
	g := startHostGate(t)
	key := g.enrol("alice")
	home := t.TempDir()
	r := runOtgate(t, home, hostGatePassword+"\n", "login", "--user", "alice", "--code", code(t, key), "--password-stdin", "--pin", g.Fingerprint, g.Addr)
	if r.code != 0 {
		t.Fatalf("login: exit %d, stderr %q", r.code, r.stderr)
	}
	old := filepath.Join(t.TempDir(), "old")
	copyDir(t, profileDir(home), old)
	if r := runOtgate(t, home, "", "logout"); r.code != 0 {
		t.Fatalf("logout: exit %d, stderr %q", r.code, r.stderr)
	}
	relogin := "log in again with otgate login --profile " + shellQuote(old) + " " + g.Addr

	err := runConnect([]string{"echo-1", "--profile", old}, io.Discard, io.Discard)
	if err == nil || !strings.HasPrefix(err.Error(), "the gate refused your credential (certificate refused: ") ||
		!strings.HasSuffix(err.Error(), "): "+relogin) {
		t.Errorf("connect without --protocol with a revoked credential: %v, want it to say to %s", err, relogin)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "connect", "echo-1", "--protocol", "tcp", "--profile", old)
	cmd.Env = append(os.Environ(), runMainEnv+"=1", "HOME="+home)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
	}()
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	next := func() string {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("connect ended")
			}
			t.Logf("connect: %s", l)
			return l
		case <-ctx.Done():
			t.Fatal("connect printed nothing more")
		}
		return ""
	}
	m := regexp.MustCompile(`^listening on (127\.0\.0\.1:\d+) for echo-1/tcp through `).FindStringSubmatch(next())
	if m == nil {
		t.Fatal("connect did not say where it listens")
	}
	c, err := net.Dial("tcp", m[1])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	line := next()
	if !strings.Contains(line, ": gate refused: certificate refused: ") ||
		!strings.HasSuffix(line, ": "+relogin+" (this connect takes the new credential for new connections)") {
		t.Errorf("a tunnel refused for the revoked credential: %q, want it to say to %s", line, relogin)
	}
}
