package proxy

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
	"github.com/otgate/otgate/inspect/modbus"
	"github.com/otgate/otgate/services/identity"
	"github.com/otgate/otgate/services/identity/api"
	"github.com/otgate/otgate/services/identity/swtpmtest"
	"github.com/otgate/otgate/services/proxy/auth"
	"github.com/otgate/otgate/services/proxy/auth/totp"
	"github.com/otgate/otgate/services/proxy/auth/userca"
	"github.com/otgate/otgate/site"
)

func sleepMs(n int) { time.Sleep(time.Duration(n) * time.Millisecond) }

// grant is one row of a stand-in policy: the proxy only sees the Decider
// interface, which this table implements with exact instants (from, until)
// so that tests can put a window's edges anywhere. The real policy path
// (site file with users, roles and grants, SiteFileLoader, package policy)
// is tested end to end in TestEndToEndSitePolicy and TestSitePolicyReload.
type grant struct {
	rule, user, asset, protocol string
	from, until                 time.Time
	modbus                      *modbus.Policy
}

type grantTable []grant

func (g grantTable) Decide(r DecisionRequest) Decision {
	var outside *grant
	for i, x := range g {
		if x.user != r.User || x.asset != r.Asset || x.protocol != r.Protocol {
			continue
		}
		if (!x.from.IsZero() && r.Time.Before(x.from)) || (!x.until.IsZero() && !r.Time.Before(x.until)) {
			outside = &g[i]
			continue
		}
		return Decision{Allow: true, Rule: x.rule, Reason: "granted by " + x.rule, Until: x.until, Modbus: x.modbus}
	}
	if outside != nil {
		return Decision{Rule: outside.rule, Reason: fmt.Sprintf("outside the time window of rule %s (%s to %s)", outside.rule,
			outside.from.Format(time.RFC3339), outside.until.Format(time.RFC3339))}
	}
	return Decision{Reason: fmt.Sprintf("no grant gives %s %s on %s", r.User, r.Protocol, r.Asset)}
}

const siteYAML = `site: lab
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
  - name: echo-2
    zone: cell
    address: 10.99.0.3
    services:
      - protocol: tcp
        port: 7
  - name: echo-3
    zone: cell
    address: 10.99.0.4
    services:
      - protocol: tcp
        port: 7
  - name: plc-1
    zone: cell
    address: 10.99.0.5
    services:
      - protocol: modbus
`

type syncLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *syncLog) text() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *syncLog) Logf(format string, a ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(&l.b, format+"\n", a...)
}

// gate is a complete proxy on the host: real identity service on swtpm,
// real user store and CA sealed by it, real audit log signed by the TPM
// key, the proxy listening on loopback and dialing into the lab.
type gate struct {
	t        testing.TB
	lab      *lab
	dir      string
	idc      *api.Client
	cert     *tls.Certificate
	log      *audit.Writer
	logDir   string
	users    *auth.Store
	caOffset atomic.Int64
	srv      *Server
	addr     string
	sitePath string
	grants   atomic.Pointer[grantTable]
	out      *syncLog
}

func startIdentity(t testing.TB, dir string) *api.Client {
	t.Helper()
	tpm := swtpmtest.Start(t, "")
	id, err := identity.Open(identity.Config{StateDir: filepath.Join(dir, "identity"), Site: "lab.test",
		TPM: identity.SocketTPM(tpm.Socket), Create: true, Log: io.Discard})
	if err != nil {
		t.Fatalf("identity: %v", err)
	}
	t.Cleanup(func() { id.Close() })
	sockDir, err := os.MkdirTemp("", "otid")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	srv, err := identity.Listen(id, identity.ServerConfig{Socket: filepath.Join(sockDir, "s"), GID: -1,
		Allow: map[uint32]string{uint32(os.Geteuid()): "proxy"}})
	if err != nil {
		t.Fatalf("identity listen: %v", err)
	}
	go srv.Serve()
	t.Cleanup(func() { srv.Close() })
	c, err := api.Dial(filepath.Join(sockDir, "s"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func newGate(t testing.TB, l *lab, opts ...func(*Config)) *gate {
	t.Helper()
	g := &gate{t: t, lab: l, dir: t.TempDir(), out: &syncLog{}}
	t.Cleanup(func() {
		if t.Failed() {
			g.out.mu.Lock()
			t.Logf("gate log:\n%s", g.out.b.String())
			g.out.mu.Unlock()
		}
	})
	g.idc = startIdentity(t, g.dir)
	var err error
	if g.cert, err = g.idc.TLSCertificate(); err != nil {
		t.Fatal(err)
	}
	g.logDir = filepath.Join(g.dir, "audit")
	if g.log, err = audit.Open(g.logDir, g.cert.PrivateKey.(crypto.Signer)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.log.Close() })
	g.users, err = auth.Open(auth.Config{Dir: filepath.Join(g.dir, "users"), Sealer: g.idc,
		Events:      AuthEvents{Log: g.log, Logf: g.out.Logf},
		Argon2:      auth.Argon2Params{Time: 1, MemoryKiB: 8 * 1024, Threads: 1, KeyLen: 32},
		MaxFailures: 3, UserBackoff: auth.UserBackoff{Base: time.Millisecond, Max: time.Millisecond},
		SourceLimit: auth.SourceLimit{Burst: 1000, Every: time.Millisecond},
		OnRevoke: func(u string) {
			if s := g.srv; s != nil {
				s.RecheckUser(u)
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.users.Close() })
	ca, err := userca.Open(userca.Config{Site: "lab.test", Sealer: g.idc, Device: g.cert, Checker: g.users,
		Now: func() time.Time { return time.Now().Add(time.Duration(g.caOffset.Load())) }})
	if err != nil {
		t.Fatal(err)
	}
	g.sitePath = filepath.Join(g.dir, "site.yaml")
	if err := os.WriteFile(g.sitePath, []byte(siteYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	g.grants.Store(&grantTable{})
	cfg := Config{Certificate: g.cert, Users: g.users, CA: UserCA{ca}, Log: g.log,
		LoadPolicy: func() (*Policy, error) {
			s, _, err := site.Load(g.sitePath, site.Options{})
			if err != nil {
				return nil, err
			}
			return &Policy{Site: s, Decider: *g.grants.Load(), Source: g.sitePath}, nil
		},
		Mark: l.mark, Logf: g.out.Logf}
	cfg.DialContext = l.dialer(l.mark)
	for _, o := range opts {
		o(&cfg)
	}
	if g.srv, err = New(cfg); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g.addr = ln.Addr().String()
	go g.srv.Serve(ln)
	t.Cleanup(func() { g.srv.Close() })
	return g
}

// setGrants changes the policy the loader returns and reloads it.
func (g *gate) setGrants(gs ...grant) {
	g.t.Helper()
	t := grantTable(gs)
	g.grants.Store(&t)
	if _, err := g.srv.Reload(); err != nil {
		g.t.Fatal(err)
	}
}

// enrol adds a user and returns the base32 TOTP secret.
// keyPin is the gate key's fingerprint, as `otgate login --pin` takes it
// (the proxy's "gate key SHA-256" line).
func (g *gate) keyPin(t testing.TB) string {
	t.Helper()
	leaf, err := x509.ParseCertificate(g.cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return client.Fingerprint(leaf)
}

func (g *gate) enrol(name string) string {
	g.t.Helper()
	en, err := g.users.AddUser(name, []byte("correct horse battery"), nil)
	if err != nil {
		g.t.Fatal(err)
	}
	return totp.EncodeSecret(en.Key.Secret)
}

// oathtool computes the current code independently of the gate's code.
func oathtool(t testing.TB, secret string) string {
	t.Helper()
	if _, err := exec.LookPath("oathtool"); err != nil {
		t.Skip("oathtool not installed (apt-get install oathtool)")
	}
	out, err := exec.Command("oathtool", "--totp", "-b", secret).Output()
	if err != nil {
		t.Fatalf("oathtool: %v", err)
	}
	return strings.TrimSpace(string(out))
}

func (g *gate) login(user, password, code string) (*client.LoginResult, string, error) {
	dir := filepath.Join(g.dir, "client-"+user)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := client.Login(ctx, client.LoginOptions{Gate: g.addr, TrustFirstUse: true, User: user, Password: password, Code: code, Dir: dir})
	return res, dir, err
}

// mustLogin enrols and logs in user; it returns the client session.
func (g *gate) mustLogin(user string) *client.Session {
	g.t.Helper()
	secret := g.enrol(user)
	_, dir, err := g.login(user, "correct horse battery", oathtool(g.t, secret))
	if err != nil {
		g.t.Fatalf("login %s: %v", user, err)
	}
	s, err := client.Open(dir)
	if err != nil {
		g.t.Fatal(err)
	}
	return s
}

// entries reads the whole audit log.
func (g *gate) entries() []audit.Entry {
	g.t.Helper()
	r, err := audit.NewReader(g.logDir)
	if err != nil {
		g.t.Fatal(err)
	}
	defer r.Close()
	var out []audit.Entry
	for {
		e, err := r.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			g.t.Fatalf("read audit log: %v", err)
		}
		out = append(out, e)
	}
}

// waitRecord waits for a record matching f (records are durable before
// the action they record, but session ends are written after the relay).
func (g *gate) waitRecord(what string, f func(audit.Body) bool) audit.Body {
	g.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		for _, e := range g.entries() {
			if f(e.Body) {
				return e.Body
			}
		}
		if time.Now().After(deadline) {
			var b strings.Builder
			for _, e := range g.entries() {
				fmt.Fprintf(&b, "  %s %+v\n", e.Record.Kind, e.Body)
			}
			g.t.Fatalf("no audit record: %s; the log holds:\n%s", what, b.String())
		}
		sleepMs(20)
	}
}

func (g *gate) waitEvent(typ, user, reasonPart string) audit.Event {
	g.t.Helper()
	return g.waitRecord(fmt.Sprintf("event %s of %s with reason containing %q", typ, user, reasonPart), func(b audit.Body) bool {
		e, ok := b.(audit.Event)
		return ok && e.Type == typ && e.User == user && strings.Contains(e.Reason, reasonPart)
	}).(audit.Event)
}

func (g *gate) waitEnd(session, reasonPart string) audit.SessionEnd {
	g.t.Helper()
	return g.waitRecord(fmt.Sprintf("end of session %s with reason containing %q", session, reasonPart), func(b audit.Body) bool {
		e, ok := b.(audit.SessionEnd)
		return ok && e.SessionID == session && strings.Contains(e.Reason, reasonPart)
	}).(audit.SessionEnd)
}
