package auth

import (
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/otgate/otgate/services/proxy/auth/authtest"
	"github.com/otgate/otgate/services/proxy/auth/totp"
)

// testArgon2 keeps the tests fast; BenchmarkArgon2Verify measures the
// defaults.
var testArgon2 = Argon2Params{Time: 1, MemoryKiB: 8 * 1024, Threads: 1, KeyLen: 32}

const testPassword = "correct horse battery"

var (
	srcA = netip.MustParseAddr("192.0.2.10")
	srcB = netip.MustParseAddr("2001:db8::1")
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// recorder keeps the audit events.
type recorder struct {
	mu     sync.Mutex
	events []AuthEvent
}

func (r *recorder) AuthEvent(e AuthEvent) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

func (r *recorder) kinds() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.events {
		k := string(e.Kind)
		if e.Reason != "" {
			k += ":" + string(e.Reason)
		}
		out = append(out, k)
	}
	return out
}

func (r *recorder) last() AuthEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.events[len(r.events)-1]
}

// env is one store on a real identity service.
type env struct {
	t     *testing.T
	id    *authtest.Identity
	dir   string
	clock *clock
	ev    *recorder
	cfg   Config
	s     *Store
}

func newEnv(t *testing.T, mod func(*Config)) *env {
	t.Helper()
	e := &env{t: t, id: authtest.StartIdentity(t), dir: filepath.Join(t.TempDir(), "proxy"), clock: newClock(), ev: &recorder{}}
	e.cfg = Config{Dir: e.dir, Sealer: e.id.Client, Events: e.ev, Now: e.clock.Now, Argon2: testArgon2}
	if mod != nil {
		mod(&e.cfg)
	}
	e.open()
	return e
}

func (e *env) open() {
	e.t.Helper()
	s, err := Open(e.cfg)
	if err != nil {
		e.t.Fatalf("open store: %v", err)
	}
	e.s = s
	e.t.Cleanup(func() { s.Close() })
}

func (e *env) restart() {
	e.t.Helper()
	if err := e.s.Close(); err != nil {
		e.t.Fatal(err)
	}
	e.open()
}

// add creates a user and returns its base32 secret as shown to the user.
func (e *env) add(name string) string {
	e.t.Helper()
	en, err := e.s.AddUser(name, []byte(testPassword), []string{"engineer"})
	if err != nil {
		e.t.Fatalf("add %s: %v", name, err)
	}
	k, err := totp.ParseURI(en.URI)
	if err != nil {
		e.t.Fatal(err)
	}
	return totp.EncodeSecret(k.Secret)
}

// oathtool computes the code for secret at the test clock's time,
// independently of package totp.
func (e *env) oathtool(secret string, offset time.Duration) string {
	e.t.Helper()
	bin, err := exec.LookPath("oathtool")
	if err != nil {
		e.t.Skip("oathtool not installed (apt-get install oathtool)")
	}
	at := e.clock.Now().Add(offset).UTC().Format("2006-01-02 15:04:05 UTC")
	out, err := exec.Command(bin, "--totp", "-b", "--now", at, secret).CombinedOutput()
	if err != nil {
		e.t.Fatalf("oathtool: %v: %s", err, out)
	}
	return strings.TrimSpace(string(out))
}

func (e *env) login(user, password, code string, src netip.Addr) (*Login, *Refusal, error) {
	l, err := e.s.Authenticate(user, []byte(password), code, src)
	if err == nil {
		return l, nil, nil
	}
	var r *Refusal
	if ok := asRefusal(err, &r); !ok {
		return nil, nil, err
	}
	return nil, r, nil
}

func (e *env) mustRefuse(user, password, code string, src netip.Addr, want Reason) *Refusal {
	e.t.Helper()
	l, r, err := e.login(user, password, code, src)
	if err != nil {
		e.t.Fatalf("login %s: unexpected error %v", user, err)
	}
	if l != nil {
		e.t.Fatalf("login %s: succeeded, want refusal %s", user, want)
	}
	if r.Reason != want {
		e.t.Fatalf("login %s: refused with %s, want %s (%v)", user, r.Reason, want, r)
	}
	return r
}

func (e *env) mustLogin(user, password, code string, src netip.Addr) *Login {
	e.t.Helper()
	l, r, err := e.login(user, password, code, src)
	if err != nil || r != nil {
		e.t.Fatalf("login %s: refused: %v %v", user, r, err)
	}
	return l
}
