package proxy

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/otgate/otgate/audit"
)

// blackhole drops, in the plant namespace, every packet to addr:port: a
// connect to it is neither accepted nor refused (SYNs go unanswered).
func (l *lab) blackhole(t testing.TB, addr netip.Addr, port int) {
	t.Helper()
	rules := fmt.Sprintf(`table inet otgate_blackhole {
	chain in {
		type filter hook input priority 0; policy accept;
		ip daddr %s tcp dport %d drop
	}
}
`, addr, port)
	cmd := exec.Command("nsenter", "-t", strconv.Itoa(l.plantPID), "-n", "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft in the plant namespace: %v\n%s", err, out)
	}
}

// TestDialCancelledWithTheSession: the dial toward an asset that does not
// answer (a black hole) goes on only while the session has a reason to
// exist: when the client goes away, an admin revokes the user, the user's
// window ends or the gate shuts down, the dial is abandoned at once (not
// at DialTimeout, 60 s here), the session leaves the live sessions and,
// when the client is there to hear it, it is refused with the reason.
func TestDialCancelledWithTheSession(t *testing.T) {
	l := newLab(t)
	l.blackhole(t, netip.MustParseAddr("10.99.0.4"), 7) // echo-3
	var inflight atomic.Int32
	g := newGate(t, l, func(c *Config) {
		c.DialTimeout = 60 * time.Second
		dial := c.DialContext
		c.DialContext = func(ctx context.Context, ap netip.AddrPort) (io.ReadWriteCloser, error) {
			inflight.Add(1)
			defer inflight.Add(-1)
			return dial(ctx, ap)
		}
	})
	g.setGrants(grant{rule: "alice-echo", user: "alice", asset: "echo-3", protocol: "tcp"},
		grant{rule: "bob-echo", user: "bob", asset: "echo-3", protocol: "tcp"},
		grant{rule: "carol-echo", user: "carol", asset: "echo-3", protocol: "tcp"},
		grant{rule: "dave-echo", user: "dave", asset: "echo-3", protocol: "tcp"})
	alice, bob, carol, dave := g.mustLogin("alice"), g.mustLogin("bob"), g.mustLogin("carol"), g.mustLogin("dave")
	// within reports whether cond holds within d.
	within := func(d time.Duration, cond func() bool) bool {
		for deadline := time.Now().Add(d); !cond(); {
			if time.Now().After(deadline) {
				return false
			}
			time.Sleep(5 * time.Millisecond)
		}
		return true
	}
	dialling := func(t *testing.T) {
		t.Helper()
		if !within(10*time.Second, func() bool { return inflight.Load() == 1 }) {
			t.Fatal("the dial did not start within 10 s")
		}
	}
	// abandoned: the dial returned and the session left the live sessions.
	abandoned := func(t *testing.T) {
		t.Helper()
		gone := func() bool { return inflight.Load() == 0 && g.srv.reg.count() == 0 }
		if !within(10*time.Second, gone) {
			t.Error("the dial or its session still there 10 s later")
			within(time.Minute, gone) // the next case starts clean
		}
	}

	t.Run("client gone", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() { _, _, err := alice.Tunnel(ctx, "echo-3", "tcp"); errc <- err }()
		dialling(t)
		cancel() // the client closes its connection
		if err := <-errc; err == nil {
			t.Fatal("tunnel to a black hole accepted")
		}
		abandoned(t)
		var id string
		for _, e := range g.entries() {
			if st, ok := e.Body.(audit.SessionStart); ok && st.User == "alice" {
				id = st.SessionID
			}
		}
		if end := g.sessionEnd(id); !strings.Contains(end.Reason, "client") {
			t.Errorf("end record reason %q, want the client's going", end.Reason)
		}
	})

	t.Run("revoked", func(t *testing.T) {
		errc := make(chan error, 1)
		go func() { _, _, err := tunnel(t, bob, "echo-3", "tcp"); errc <- err }()
		dialling(t)
		if _, err := g.srv.RevokeUser("bob", "test: revoked during the dial"); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-errc:
			denied(t, err, EndRevoked)
		case <-time.After(10 * time.Second):
			t.Fatal("no answer within 10 s of the revocation")
		}
		abandoned(t)
	})

	t.Run("window ends", func(t *testing.T) {
		until := time.Now().Add(1500 * time.Millisecond)
		g.setGrants(grant{rule: "carol-echo", user: "carol", asset: "echo-3", protocol: "tcp", until: until},
			grant{rule: "dave-echo", user: "dave", asset: "echo-3", protocol: "tcp"})
		errc := make(chan error, 1)
		go func() { _, _, err := tunnel(t, carol, "echo-3", "tcp"); errc <- err }()
		dialling(t)
		select {
		case err := <-errc:
			denied(t, err, EndUntil)
			if late := time.Since(until); late > 10*time.Second {
				t.Errorf("refused %v after the window's end", late)
			}
		case <-time.After(time.Until(until) + 10*time.Second):
			t.Fatal("no answer within 10 s of the window's end")
		}
		abandoned(t)
	})

	t.Run("shutdown", func(t *testing.T) {
		errc := make(chan error, 1)
		go func() { _, _, err := tunnel(t, dave, "echo-3", "tcp"); errc <- err }()
		dialling(t)
		shut := make(chan error, 1)
		go func() { shut <- g.srv.Shutdown(EndShutdown) }()
		select {
		case err := <-shut:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Shutdown waited on the dial to a black hole")
		}
		denied(t, <-errc, EndShutdown)
		abandoned(t)
	})
}

// tlsPair is a TLS 1.3 connection over loopback TCP: the server's end and
// the client's.
func tlsPair(t *testing.T) (srv, cli *tls.Conn) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"gate"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan *tls.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			accepted <- nil
			return
		}
		tc := tls.Server(c, &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}})
		if tc.Handshake() != nil {
			tc.Close()
			tc = nil
		}
		accepted <- tc
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	cli = tls.Client(c, &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true})
	if err := cli.Handshake(); err != nil {
		t.Fatal(err)
	}
	if srv = <-accepted; srv == nil {
		t.Fatal("server handshake failed")
	}
	t.Cleanup(func() { srv.Close(); cli.Close() })
	return srv, cli
}

// TestClientWatch: the watch over a client waiting for the gate's answer
// keeps what the client sends meanwhile, in order before what it sends
// after (whether the watch read it or not: a read stopped by its deadline
// loses nothing), and ends the session, with the reason, when the client
// closes its connection.
func TestClientWatch(t *testing.T) {
	t.Run("early bytes", func(t *testing.T) {
		srv, cli := tlsPair(t)
		sess := &session{ended: make(chan struct{})}
		w := watchClient(srv, sess)
		for _, m := range []string{"early ", "bytes "} {
			if _, err := cli.Write([]byte(m)); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(50 * time.Millisecond)
		early := w.stop()
		if _, err := cli.Write([]byte("and later")); err != nil {
			t.Fatal(err)
		}
		cli.CloseWrite()
		got, err := io.ReadAll(&earlyConn{Conn: srv, early: early})
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != "early bytes and later" {
			t.Fatalf("relay would read %q (kept %q), want %q", got, early, "early bytes and later")
		}
		if r, ended := sess.endedWith(); ended {
			t.Fatalf("session ended (%s) with its client there", r)
		}
	})
	t.Run("client closes", func(t *testing.T) {
		srv, cli := tlsPair(t)
		sess := &session{ended: make(chan struct{})}
		w := watchClient(srv, sess)
		defer w.stop()
		cli.Close()
		select {
		case <-sess.ended:
		case <-time.After(5 * time.Second):
			t.Fatal("session not ended 5 s after its client closed")
		}
		if r, _ := sess.endedWith(); !strings.HasPrefix(r, EndClientClosed) {
			t.Fatalf("end reason %q, want %q...", r, EndClientClosed)
		}
	})
}

// TestDialWithoutContext: a Config.Dial (no context) returns at once when
// the session's dial context ends; the connection it opens later is
// closed.
func TestDialWithoutContext(t *testing.T) {
	release := make(chan struct{})
	closed := make(chan struct{})
	dial := withoutContext(func(netip.AddrPort) (io.ReadWriteCloser, error) {
		<-release
		return closeFunc(func() error { close(closed); return nil }), nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	c, err := dial(ctx, netip.MustParseAddrPort("192.0.2.1:7"))
	if c != nil || !errors.Is(err, context.Canceled) {
		t.Fatalf("dial returned %v, %v; want context.Canceled", c, err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("dial returned %v after its context ended", d)
	}
	close(release)
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the connection the abandoned dial opened was not closed")
	}
}

type closeFunc func() error

func (f closeFunc) Read([]byte) (int, error)  { return 0, io.EOF }
func (f closeFunc) Write([]byte) (int, error) { return 0, io.ErrClosedPipe }
func (f closeFunc) Close() error              { return f() }
