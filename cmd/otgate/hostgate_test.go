//go:build !windows

package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/otgate/otgate/audit"
	"github.com/otgate/otgate/client"
	"github.com/otgate/otgate/services/proxy"
	"github.com/otgate/otgate/services/proxy/auth"
	"github.com/otgate/otgate/services/proxy/auth/authtest"
	"github.com/otgate/otgate/services/proxy/auth/totp"
	"github.com/otgate/otgate/services/proxy/auth/userca"
)

// runMainEnv makes the test binary be otgate (see TestMain): runOtgate
// starts it with the command's arguments, so that a test goes through
// main itself (dispatch, the "otgate NAME: " error prefix, the exit
// status) with a pipe as standard input, as a script would.
const runMainEnv = "OTGATE_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		os.Args[0] = "otgate"
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// otgateRun is what one otgate command did.
type otgateRun struct {
	stdout, stderr string
	code           int // exit status
}

// runOtgate runs `otgate args...` in a child process with stdin, the
// user's config directory (XDG_CONFIG_HOME, and so the default profile
// directory) under home.
func runOtgate(t *testing.T, home, stdin string, args ...string) otgateRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Env = append(os.Environ(), runMainEnv+"=1", "HOME="+home, "XDG_CONFIG_HOME="+filepath.Join(home, ".config"))
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	r := otgateRun{stdout: out.String(), stderr: errOut.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("otgate %s: %v", strings.Join(args, " "), err)
	}
	t.Logf("$ otgate %s  (exit %d)\n%s%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	return r
}

// profileDir is the default profile directory of runOtgate's home.
func profileDir(home string) string { return filepath.Join(home, ".config", "otgate") }

// hostGateSite grants alice (role engineer) echo-1 over tcp for sessions
// of at most 2 h, and hmi-2 over tcp for 4 h; hmi-2's vnc is bob's only.
const hostGateSite = `site: host-lab
zones:
  - name: cell
    owner: ot@lab.example
    mode: enforce
    interface: eth1
    subnet: 10.99.0.0/24
    gate_address: 10.99.0.1
assets:
  - name: echo-1
    zone: cell
    address: 10.99.0.2
    services:
      - protocol: tcp
        port: 7
  - name: hmi-2
    zone: cell
    address: 10.99.0.3
    services:
      - protocol: tcp
        port: 7
      - protocol: vnc
roles:
  - name: engineer
    description: automation engineers
users:
  - name: alice
    roles: [engineer]
  - name: bob
grants:
  - name: engineer-echo
    subjects:
      roles: [engineer]
    targets:
      assets: [echo-1]
    protocols: [tcp]
    max_session: 2h
  - name: alice-hmi
    subjects:
      users: [alice]
    targets:
      assets: [hmi-2]
    protocols: [tcp]
    max_session: 4h
  - name: bob-hmi
    subjects:
      users: [bob]
    targets:
      assets: [hmi-2]
    protocols: [tcp, vnc]
`

// hostGate is a whole gate on the host, built from exported APIs as the
// proxy service builds it: the identity service on swtpm (authtest), the
// user store and user CA sealed by it, the audit log signed by the device
// key, the site file through proxy.SiteFileLoader, and proxy.New on a
// loopback listener. Every asset is an echo server on loopback.
type hostGate struct {
	t    *testing.T
	Addr string // the gate's host:port
	// Fingerprint is the gate certificate's, as login pins it.
	Fingerprint string
	// ID is the gate's identity, spiffe://SITE/gate/SERIAL.
	ID       string
	Users    *auth.Store
	Server   *proxy.Server
	AuditDir string
	log      lockedLog
}

// lockedLog keeps the gate's log lines; they are printed when the test
// failed (t.Logf must not run after the test ends).
type lockedLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedLog) Logf(format string, a ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(&l.b, format+"\n", a...)
}

func startHostGate(t *testing.T) *hostGate {
	t.Helper()
	return startHostGateCertified(t, nil)
}

// startHostGateCertified is startHostGate whose gate serves the device
// certificate certify makes for the device key (nil: the identity's own,
// self-signed), as after otgate identity csr / install-cert with an
// enterprise CA.
func startHostGateCertified(t *testing.T, certify func(device *x509.Certificate) []byte) *hostGate {
	t.Helper()
	id := authtest.StartIdentity(t)
	g := &hostGate{t: t}
	t.Cleanup(func() {
		if t.Failed() {
			g.log.mu.Lock()
			t.Logf("gate log:\n%s", g.log.b.String())
			g.log.mu.Unlock()
		}
	})
	dir := t.TempDir()
	cert, err := id.Client.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	g.Fingerprint = client.Fingerprint(leaf)
	g.ID = leaf.URIs[0].String()
	served := cert
	if certify != nil {
		served = &tls.Certificate{Certificate: [][]byte{certify(leaf)}, PrivateKey: cert.PrivateKey}
	}
	g.AuditDir = filepath.Join(dir, "audit")
	w, err := audit.Open(g.AuditDir, cert.PrivateKey.(crypto.Signer))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	var srv atomic.Pointer[proxy.Server]
	g.Users, err = auth.Open(auth.Config{Dir: filepath.Join(dir, "users"), Sealer: id.Client,
		Events: proxy.AuthEvents{Log: w, Logf: g.log.Logf},
		Argon2: auth.Argon2Params{Time: 1, MemoryKiB: 8 * 1024, Threads: 1, KeyLen: 32},
		OnRevoke: func(u string) {
			if s := srv.Load(); s != nil {
				s.RecheckUser(u)
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Users.Close() })
	ca, err := userca.Open(userca.Config{Site: authtest.Site, Sealer: id.Client, Device: cert, Checker: g.Users})
	if err != nil {
		t.Fatal(err)
	}
	sitePath := filepath.Join(dir, "site.yaml")
	if err := os.WriteFile(sitePath, []byte(hostGateSite), 0o600); err != nil {
		t.Fatal(err)
	}
	echo := listenEcho(t)
	g.Server, err = proxy.New(proxy.Config{Certificate: served, Users: g.Users, CA: proxy.UserCA{CA: ca}, Log: w,
		LoadPolicy: proxy.SiteFileLoader(sitePath),
		Dial: func(netip.AddrPort) (io.ReadWriteCloser, error) {
			return net.Dial("tcp", echo)
		},
		Logf: g.log.Logf})
	if err != nil {
		t.Fatal(err)
	}
	srv.Store(g.Server)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g.Addr = ln.Addr().String()
	go g.Server.Serve(ln)
	t.Cleanup(func() { g.Server.Close() })
	return g
}

// listenEcho serves echo on a loopback port until the test ends.
func listenEcho(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	return ln.Addr().String()
}

const hostGatePassword = "correct horse battery"

// enrol adds user with hostGatePassword and returns its TOTP key.
func (g *hostGate) enrol(user string) totp.Key {
	g.t.Helper()
	en, err := g.Users.AddUser(user, []byte(hostGatePassword), nil)
	if err != nil {
		g.t.Fatal(err)
	}
	return en.Key
}

// code is the key's TOTP code now.
func code(t *testing.T, k totp.Key) string {
	t.Helper()
	c, err := totp.Code(k.Secret, time.Now(), k.Params)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// events reads the audit log's events of user.
func (g *hostGate) events(user string) []audit.Event {
	g.t.Helper()
	r, err := audit.NewReader(g.AuditDir)
	if err != nil {
		g.t.Fatal(err)
	}
	defer r.Close()
	var out []audit.Event
	for {
		e, err := r.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			g.t.Fatalf("read audit log: %v", err)
		}
		if ev, ok := e.Body.(audit.Event); ok && ev.User == user {
			out = append(out, ev)
		}
	}
}

// hasEvent says whether user has an event of type typ whose reason
// contains reason.
func (g *hostGate) hasEvent(user, typ, reason string) bool {
	for _, e := range g.events(user) {
		if e.Type == typ && strings.Contains(e.Reason, reason) {
			return true
		}
	}
	return false
}
