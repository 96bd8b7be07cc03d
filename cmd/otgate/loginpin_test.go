package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/otgate/otgate/client"
	"github.com/otgate/otgate/internal/ptytest"
	"github.com/otgate/otgate/services/proxy/auth/totp"
)

// openPTY returns a pseudo-terminal's master and its slave.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	master, path := ptytest.Open(t)
	slave, err := os.OpenFile(path, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { slave.Close() })
	return master, slave
}

// terminal is what a user sees on a pseudo-terminal, and types into it.
type terminal struct {
	master *os.File
	mu     sync.Mutex
	seen   bytes.Buffer
}

func newTerminal(master *os.File) *terminal {
	tm := &terminal{master: master}
	go func() {
		b := make([]byte, 4096)
		for {
			n, err := master.Read(b)
			tm.mu.Lock()
			tm.seen.Write(b[:n])
			tm.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	return tm
}

// waitFor waits until the terminal shows s, then returns all it showed.
func (tm *terminal) waitFor(t *testing.T, s string) string {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		tm.mu.Lock()
		out := tm.seen.String()
		tm.mu.Unlock()
		if strings.Contains(out, s) {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("the terminal never showed %q; it showed:\n%s", s, out)
		}
	}
}

func (tm *terminal) typeLine(t *testing.T, s string) {
	t.Helper()
	if _, err := tm.master.Write([]byte(s + "\n")); err != nil {
		t.Fatal(err)
	}
}

// TestLoginAsksToConfirmTheGateKey: a first login at a terminal shows the
// gate's key and asks, as ssh does, before any credential is asked for or
// sent; "no" sends nothing and stores nothing, "yes" logs in and pins it.
func TestLoginAsksToConfirmTheGateKey(t *testing.T) {
	g := startHostGate(t)
	key := g.enrol("alice")
	home := t.TempDir()
	prof := filepath.Join(t.TempDir(), "profile")
	login := func(answer string) (string, error) {
		master, slave := openPTY(t)
		tm := newTerminal(master)
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, os.Args[0], "login", "--profile", prof, "--user", "alice", "--code", code(t, key), g.Addr)
		cmd.Env = append(os.Environ(), runMainEnv+"=1", "HOME="+home)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		shown := tm.waitFor(t, "(yes/no): ")
		if !strings.Contains(shown, "first connection to "+g.Addr+": its key has SHA-256\r\n  "+g.Fingerprint+"\r\n") {
			t.Errorf("the confirmation does not show the gate's key %s:\n%s", g.Fingerprint, shown)
		}
		if strings.Contains(shown, "password") {
			t.Errorf("the password was asked for before the gate's key was confirmed:\n%s", shown)
		}
		tm.typeLine(t, answer)
		if answer == "yes" {
			tm.waitFor(t, "password: ")
			tm.typeLine(t, hostGatePassword)
		}
		err := cmd.Wait()
		slave.Close()
		time.Sleep(50 * time.Millisecond) // the reader drains what is left
		tm.mu.Lock()
		defer tm.mu.Unlock()
		return tm.seen.String(), err
	}

	out, err := login("no")
	if err == nil || !strings.Contains(out, `gate key not confirmed (answered "no", want yes): no credential was sent`) {
		t.Fatalf("answer no: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(prof, client.ProfileFile)); err == nil {
		t.Fatal("answer no stored a profile")
	}
	out, err = login("yes")
	if err != nil || !strings.Contains(out, "pinned "+g.Addr+"'s key SHA-256 "+g.Fingerprint) || !strings.Contains(out, "logged in as alice") {
		t.Fatalf("answer yes: %v\n%s", err, out)
	}
	// The pin is stored: the next login asks nothing about the key (the
	// code of the next step: each code works once).
	next, err := totp.Code(key.Secret, time.Now().Add(30*time.Second), key.Params)
	if err != nil {
		t.Fatal(err)
	}
	r := runOtgate(t, home, hostGatePassword+"\n", "login", "--profile", prof, "--user", "alice", "--code", next, "--password-stdin", g.Addr)
	if r.code != 0 || strings.Contains(r.stdout, "pinned") {
		t.Fatalf("second login: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}
