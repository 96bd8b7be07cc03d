//go:build !windows

package main

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/otgate/otgate/client"
	"github.com/otgate/otgate/services/proxy/auth/totp"
)

// TestConnectTakesANewLogin: a running otgate connect takes for its new
// connections the credential of a new login with its profile, for the
// same gate and user, and says so; a connection open already keeps its
// own until the gate ends it. The new connection is the new
// certificate's (the gate's session table names its serial), even with
// the old one revoked: no TLS session resumed with the old one. A login
// with the same profile as another user, or to another gate, is not
// taken, and connect says why and what to do; the notice stream the gate
// closed for a revoked credential opens again with the next one taken.
func TestConnectTakesANewLogin(t *testing.T) {
	a, b := startHostGate(t), startHostGate(t)
	aliceA, aliceB, bobA := a.enrol("alice"), b.enrol("alice"), a.enrol("bob")
	codesA := consecutiveCodes(t, aliceA, 3)
	home := t.TempDir()
	prof := filepath.Join(t.TempDir(), "profile")
	login := func(g *hostGate, user, code string) {
		t.Helper()
		r := runOtgate(t, home, hostGatePassword+"\n", "login", "--profile", prof, "--user", user, "--code", code, "--password-stdin", "--pin", g.Fingerprint, g.Addr)
		if r.code != 0 {
			t.Fatalf("login of %s at %s: exit %d, stderr %q", user, g.Addr, r.code, r.stderr)
		}
	}
	login(a, "alice", codesA[0])
	serial1 := certSerial(t, prof)

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "connect", "echo-1", "--protocol", "tcp", "--profile", prof)
	cmd.Env = append(os.Environ(), runMainEnv+"=1", "HOME="+home)
	lines := make(chan string, 64)
	pipe := func(get func() (io.ReadCloser, error), name string) {
		r, err := get()
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			sc := bufio.NewScanner(r)
			for sc.Scan() {
				lines <- name + ": " + sc.Text()
			}
		}()
	}
	pipe(cmd.StdoutPipe, "stdout")
	pipe(cmd.StderrPipe, "stderr")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
	}()
	// waitFor returns the first line matching re that no earlier call
	// took (stdout, stderr and the notice stream are not in step),
	// failing after 15 s (connect looks for a new login every 2 s).
	var seen []string
	waitFor := func(re string) []string {
		t.Helper()
		rx := regexp.MustCompile(re)
		for i, l := range seen {
			if m := rx.FindStringSubmatch(l); m != nil {
				seen = append(seen[:i], seen[i+1:]...)
				return m
			}
		}
		deadline := time.After(15 * time.Second)
		for {
			select {
			case l := <-lines:
				t.Logf("connect %s", l)
				if m := rx.FindStringSubmatch(l); m != nil {
					return m
				}
				seen = append(seen, l)
			case <-deadline:
				t.Fatalf("connect did not print a line matching %s", re)
			}
		}
	}
	q := regexp.QuoteMeta
	listen := waitFor(`^stdout: listening on (127\.0\.0\.1:\d+) for echo-1/tcp through `)[1]
	echo := func(c net.Conn, s string) error {
		t.Helper()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write([]byte(s)); err != nil {
			return err
		}
		b := make([]byte, len(s))
		if _, err := io.ReadFull(c, b); err != nil {
			return err
		}
		if string(b) != s {
			t.Fatalf("echo %q, want %q", b, s)
		}
		return nil
	}
	dial := func() net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", listen)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	c1 := dial()
	if err := echo(c1, "one"); err != nil {
		t.Fatalf("the first tunnel: %v", err)
	}

	// A renewal is taken, and said; the open tunnel goes on.
	login(a, "alice", codesA[1])
	serial2 := certSerial(t, prof)
	waitFor(`^stderr: otgate: echo-1: new login: new connections use the credential of alice for ` + q(a.Addr) + `, valid until [^(]+ \(connections open already keep theirs until the gate ends them\)$`)
	if err := echo(c1, "two"); err != nil {
		t.Errorf("the first tunnel after the new login: %v", err)
	}
	// The old certificate revoked: the gate ends its session; a new
	// connection works, with the new certificate.
	if _, err := a.Server.RevokeSerial("alice", serial1, "test: the first certificate"); err != nil {
		t.Fatal(err)
	}
	c2 := dial()
	if err := echo(c2, "three"); err != nil {
		t.Fatalf("a tunnel after the new login with the old certificate revoked: %v", err)
	}
	var serials []string
	for _, s := range a.Server.Sessions() {
		serials = append(serials, s.Serial)
	}
	if !slices.Contains(serials, serial2) {
		t.Errorf("the gate's sessions are of serials %v, none of the new certificate's %s", serials, serial2)
	}
	// The gate closed the notice stream opened with the old certificate;
	// it is open again with the new one.
	waitFor(`^stderr: otgate: echo-1: gate closed the notice stream: .*serial ` + serial1 + ` revoked; warnings come from local timers$`)
	waitFor(`^stderr: otgate: echo-1: notice stream open again$`)

	// Another user's login with the profile is not taken (and, a profile
	// holding one credential, it ended alice's at the gate).
	login(a, "bob", code(t, bobA))
	waitFor(`^stderr: otgate: echo-1: the profile ` + q(prof) + ` holds a new credential for bob at ` + q(a.Addr) + `, not taken: this connect is alice's; ` +
		`new connections keep the credential of alice for ` + q(a.Addr) + `, valid until [^:]+:\d\d:\d\d \S+: start otgate connect again to use the new one$`)
	dial()
	waitFor(`^stdout: 127\.0\.0\.1:\d+: gate refused: certificate refused: .*: log in again with otgate login --profile ` + q(prof) + ` ` + q(a.Addr) +
		` \(this connect takes the new credential for new connections\)$`)
	waitFor(`^stderr: otgate: echo-1: gate closed the notice stream: .*; warnings come from local timers$`)
	// Nor another gate's.
	login(b, "alice", code(t, aliceB))
	waitFor(`^stderr: otgate: echo-1: the profile ` + q(prof) + ` holds a new credential for alice at ` + q(b.Addr) + `, not taken: this connect is for ` + q(a.Addr) + `; `)
	// alice again at this gate: taken, and the notice stream is back.
	login(a, "alice", codesA[2])
	waitFor(`^stderr: otgate: echo-1: new login: new connections use the credential of alice for ` + q(a.Addr) + `, `)
	waitFor(`^stderr: otgate: echo-1: notice stream open again$`)
	if err := echo(dial(), "four"); err != nil {
		t.Errorf("a tunnel after alice's new login: %v", err)
	}
}

// certSerial is the serial of the certificate in the profile dir, as the
// gate's session table has it.
func certSerial(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, client.CertFile))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatal("no certificate in the profile")
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c.SerialNumber.Text(16)
}

// consecutiveCodes is n codes of k for n steps from the previous one, in
// the order a gate accepts them (each step once, later than the last):
// with the default skew of one step, three logins in a test.
func consecutiveCodes(t *testing.T, k totp.Key, n int) []string {
	t.Helper()
	period := time.Duration(k.Params.Period) * time.Second
	// Not at the end of a step: the first code must stay in the window.
	if left := period - time.Duration(time.Now().UnixNano())%period; left < 5*time.Second {
		time.Sleep(left)
	}
	now := time.Now()
	var out []string
	for i := range n {
		c, err := totp.Code(k.Secret, now.Add(time.Duration(i-1)*period), k.Params)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	return out
}
