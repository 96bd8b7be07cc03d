//go:build !windows

package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/otgate/otgate/client"
)

// TestConnectWithExpiredCredential: connect with a certificate that has
// expired says so and how to log in again, before it listens (with
// --protocol it asks the gate nothing first).
func TestConnectWithExpiredCredential(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "profile")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	end := time.Now().Add(-time.Minute).Truncate(time.Second)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "alice"},
		NotBefore: end.Add(-8 * time.Hour), NotAfter: end}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{
		client.ProfileFile: []byte(`{"gate": "127.0.0.1:1", "pin": "` + strings.Repeat("ab", 32) + `", "user": "alice"}`),
		client.KeyFile:     pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk}),
		client.CertFile:    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
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
