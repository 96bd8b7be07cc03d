package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/otgate/otgate/audit"
	"github.com/otgate/otgate/client"
	"github.com/otgate/otgate/services/proxy/adminapi"
	"github.com/otgate/otgate/services/proxy/wire"
)

func tunnel(t *testing.T, s *client.Session, asset, protocol string) (*tls.Conn, *wire.Reply, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return s.Tunnel(ctx, asset, protocol)
}

func echoRoundTrip(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatalf("write: %v", err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("read echo: %v", err)
	}
	if string(buf) != msg {
		t.Fatalf("echo = %q, want %q", buf, msg)
	}
	c.SetDeadline(time.Time{})
}

// waitClosed waits until the gate closes c.
func waitClosed(t *testing.T, c net.Conn, within time.Duration) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(within))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open after %v", within)
	}
}

func denied(t *testing.T, err error, reasonPart string) *wire.Reply {
	t.Helper()
	var d *client.DeniedError
	if !errors.As(err, &d) {
		t.Fatalf("tunnel: %v, want a denial mentioning %q", err, reasonPart)
	}
	if !strings.Contains(d.Reply.Reason, reasonPart) {
		t.Fatalf("denial reason %q does not mention %q", d.Reply.Reason, reasonPart)
	}
	return &d.Reply
}

func TestEndToEnd(t *testing.T) {
	l := newLab(t)
	go serveEcho(l.listenPlant(t, 7))
	g := newGate(t, l)
	now := time.Now()
	g.setGrants(
		grant{rule: "alice-echo", user: "alice", asset: "echo-1", protocol: "tcp"},
		grant{rule: "alice-late", user: "alice", asset: "echo-2", protocol: "tcp", from: now.Add(time.Hour), until: now.Add(2 * time.Hour)},
		grant{rule: "bob-echo", user: "bob", asset: "echo-1", protocol: "tcp"},
		grant{rule: "carol-echo", user: "carol", asset: "echo-1", protocol: "tcp"},
		grant{rule: "dave-echo", user: "dave", asset: "echo-1", protocol: "tcp"},
	)

	secret := g.enrol("alice")
	code := oathtool(t, secret)
	res, dir, err := g.login("alice", "correct horse battery", code)
	if err != nil {
		t.Fatalf("login: %v", err)
	}
	if !res.FirstUse || res.Fingerprint != client.Fingerprint(g.cert.Leaf) {
		t.Fatalf("login result %+v: want the gate's key pinned on first use (%s)", res, client.Fingerprint(g.cert.Leaf))
	}
	for _, f := range []string{client.KeyFile, client.CertFile, client.ProfileFile} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v, mode %v: want 0600", f, err, st.Mode())
		}
	}
	if st, _ := os.Stat(dir); st.Mode().Perm() != 0o700 {
		t.Fatalf("profile dir mode %v, want 0700", st.Mode().Perm())
	}
	alice, err := client.Open(dir)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("replayed code", func(t *testing.T) {
		_, _, err := g.login("alice", "correct horse battery", code)
		if err == nil || !strings.Contains(err.Error(), "login failed") {
			t.Fatalf("second login with the same code: %v, want refused", err)
		}
		g.waitEvent("login-failed", "alice", "replayed-code")
		// The console says why too (the client is told only "login failed").
		if !regexp.MustCompile(`proxy: auth: login of "alice" from 127\.0\.0\.1 refused: replayed-code \(1 consecutive failures\)`).MatchString(g.out.text()) {
			t.Fatalf("the gate's log does not name the replayed code:\n%s", g.out.text())
		}
	})

	t.Run("assets", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		rsp, err := alice.Assets(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(rsp.Assets) != 1 || rsp.Assets[0].Name != "echo-1" || rsp.Assets[0].Rule != "alice-echo" {
			t.Fatalf("assets = %+v, want only echo-1 by alice-echo (echo-2 is outside its window)", rsp.Assets)
		}
	})

	t.Run("bytes flow through connect", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		replies := make(chan *wire.Reply, 4)
		f := &client.Forwarder{Session: alice, Asset: "echo-1", Protocol: "tcp",
			OnTunnel: func(_ net.Addr, r *wire.Reply, err error) {
				if err != nil {
					t.Errorf("tunnel: %v", err)
				}
				replies <- r
			}}
		done := make(chan error, 1)
		go func() { done <- f.Serve(ctx, ln) }()
		defer func() { cancel(); <-done }()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		msg := strings.Repeat("hello plant ", 4000) // several TLS records
		echoRoundTrip(t, c, msg)
		r := <-replies
		if r == nil || !r.Accept || r.Rule != "alice-echo" {
			t.Fatalf("reply %+v", r)
		}
		c.Close()
		end := g.waitEnd(r.Session, EndClientClosed)
		if end.BytesToAsset != uint64(len(msg)) || end.BytesToClient != uint64(len(msg)) {
			t.Fatalf("end record %+v: want %d bytes each way", end, len(msg))
		}
		start := g.waitRecord("session start", func(b audit.Body) bool {
			s, ok := b.(audit.SessionStart)
			return ok && s.SessionID == r.Session
		}).(audit.SessionStart)
		if start.User != "alice" || start.Asset != "echo-1" || start.Rule != "alice-echo" || start.CertSerial == "" || start.Source != "127.0.0.1" {
			t.Fatalf("start record %+v", start)
		}
		var toAsset uint64
		for _, e := range g.entries() {
			if p, ok := e.Body.(audit.Payload); ok && p.SessionID == r.Session && p.Direction == audit.ToAsset {
				toAsset += p.Bytes
			}
		}
		if toAsset != uint64(len(msg)) {
			t.Fatalf("payload records count %d bytes to the asset, want %d", toAsset, len(msg))
		}
	})

	t.Run("asset reachable only with the proxy's mark", func(t *testing.T) {
		c, err := l.dialer(0)(context.Background(), netipAddrPort(l.plantAddr, 7))
		if err == nil {
			c.Close()
			t.Fatal("an unmarked socket reached the asset: the lab's nftables rule is not working")
		}
	})

	t.Run("outside the time window", func(t *testing.T) {
		_, _, err := tunnel(t, alice, "echo-2", "tcp")
		r := denied(t, err, "outside the time window")
		if r.Rule != "alice-late" {
			t.Fatalf("rule %q, want alice-late", r.Rule)
		}
		g.waitEvent(EventSessionRefused, "alice", "outside the time window")
	})

	t.Run("no grant", func(t *testing.T) {
		_, _, err := tunnel(t, alice, "echo-3", "tcp")
		denied(t, err, "no grant")
		g.waitEvent(EventSessionRefused, "alice", "no grant gives alice tcp on echo-3")
	})

	t.Run("unknown asset and protocol", func(t *testing.T) {
		_, _, err := tunnel(t, alice, "plc-99", "tcp")
		denied(t, err, `no such asset "plc-99"`)
		_, _, err = tunnel(t, alice, "echo-1", "modbus")
		denied(t, err, `does not offer protocol "modbus"`)
	})

	t.Run("wrong code then lockout", func(t *testing.T) {
		secret := g.enrol("bob")
		good := oathtool(t, secret)
		wrong := []byte(good)
		wrong[0] = '0' + (wrong[0]-'0'+5)%10
		for i := 0; i < 3; i++ {
			if _, _, err := g.login("bob", "correct horse battery", string(wrong)); err == nil {
				t.Fatal("wrong code accepted")
			}
		}
		g.waitEvent("login-failed", "bob", "bad-code")
		g.waitEvent("locked", "bob", "")
		_, _, err := g.login("bob", "correct horse battery", good)
		if err == nil || !strings.Contains(err.Error(), "locked") {
			t.Fatalf("login of a locked account with the right code: %v", err)
		}
		g.waitEvent("login-failed", "bob", "locked")
		if err := g.srv.Unlock("bob"); err != nil {
			t.Fatal(err)
		}
		g.waitEvent("unlocked", "bob", "")
	})

	t.Run("expired certificate", func(t *testing.T) {
		g.caOffset.Store(int64(-9 * time.Hour)) // issue in the past: 8 h validity ended an hour ago
		carol := g.mustLogin("carol")
		g.caOffset.Store(0)
		_, _, err := tunnel(t, carol, "echo-1", "tcp")
		denied(t, err, "expired")
		g.waitEvent(EventSessionRefused, "carol", "expired")
	})

	t.Run("revoked certificate ends live session and is refused", func(t *testing.T) {
		dave := g.mustLogin("dave")
		c, r, err := tunnel(t, dave, "echo-1", "tcp")
		if err != nil {
			t.Fatal(err)
		}
		echoRoundTrip(t, c, "before revoke")
		n, err := g.srv.RevokeUser("dave", "test: laptop lost")
		if err != nil || n != 1 {
			t.Fatalf("RevokeUser = %d, %v; want 1 session ended", n, err)
		}
		waitClosed(t, c, 30*time.Second)
		g.waitEnd(r.Session, EndRevoked)
		_, _, err = tunnel(t, dave, "echo-1", "tcp")
		denied(t, err, "revoked")
		g.waitEvent(EventSessionRefused, "dave", "revoked")
	})

	t.Run("admin socket", func(t *testing.T) {
		sock := filepath.Join(t.TempDir(), "admin.sock")
		a, err := g.srv.ListenAdmin(sock)
		if err != nil {
			t.Fatal(err)
		}
		go a.Serve()
		defer a.Close()
		if st, _ := os.Stat(sock); st.Mode().Perm() != 0o600 {
			t.Fatalf("admin socket mode %v, want 0600", st.Mode().Perm())
		}
		c, r, err := tunnel(t, alice, "echo-1", "tcp")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		echoRoundTrip(t, c, "listed")
		// The echo can be back before the relay has counted the bytes it
		// wrote to the asset: the count may lag, never stay wrong.
		var rsp *adminapi.Response
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			if rsp, err = adminapi.Call(sock, adminapi.Request{Op: adminapi.OpSessions}); err != nil {
				t.Fatal(err)
			}
			if len(rsp.Sessions) == 1 && rsp.Sessions[0].BytesToAsset == 6 || time.Now().After(deadline) {
				break
			}
		}
		if len(rsp.Sessions) != 1 || rsp.Sessions[0].ID != r.Session || rsp.Sessions[0].BytesToAsset != 6 {
			t.Fatalf("sessions = %+v, want session %s with 6 bytes to the asset", rsp.Sessions, r.Session)
		}
		if _, err := adminapi.Call(sock, adminapi.Request{Op: "format-disk"}); err == nil || !strings.Contains(err.Error(), "unknown operation") {
			t.Fatalf("unknown op: %v", err)
		}
		if _, err := adminapi.Call(sock, adminapi.Request{Op: adminapi.OpUnlock, User: "nobody"}); err == nil {
			t.Fatal("unlock of an unknown user succeeded")
		}
	})

	t.Run("window ends during a session", func(t *testing.T) {
		gs := *g.grants.Load()
		gs = append(gs, grant{rule: "alice-short", user: "alice", asset: "echo-3", protocol: "tcp", until: time.Now().Add(3 * time.Second)})
		g.setGrants(gs...)
		c, r, err := tunnel(t, alice, "echo-3", "tcp")
		if err != nil {
			t.Fatal(err)
		}
		if r.UntilTime().IsZero() || r.Rule != "alice-short" {
			t.Fatalf("reply %+v: want until set by alice-short", r)
		}
		echoRoundTrip(t, c, "in the window")
		waitClosed(t, c, 30*time.Second)
		g.waitEnd(r.Session, EndUntil)
	})

	t.Run("policy reload ends a session it no longer allows", func(t *testing.T) {
		c, r, err := tunnel(t, alice, "echo-1", "tcp")
		if err != nil {
			t.Fatal(err)
		}
		echoRoundTrip(t, c, "before reload")
		// A broken site file: the reload fails naming file and line, and
		// the session and the old policy stay.
		good, _ := os.ReadFile(g.sitePath)
		os.WriteFile(g.sitePath, bytes.Replace(good, []byte("mode: enforce"), []byte("mode: enforced"), 1), 0o600)
		_, err = g.srv.Reload()
		if !errors.Is(err, ErrReload) || !strings.Contains(err.Error(), "site.yaml:") {
			t.Fatalf("reload of a bad file: %v, want ErrReload naming site.yaml:line", err)
		}
		echoRoundTrip(t, c, "still allowed")
		os.WriteFile(g.sitePath, good, 0o600)
		var keep grantTable
		for _, x := range *g.grants.Load() {
			if x.rule != "alice-echo" {
				keep = append(keep, x)
			}
		}
		kt := keep
		g.grants.Store(&kt)
		rep, err := g.srv.Reload()
		if err != nil || rep.Ended != 1 {
			t.Fatalf("Reload = %d, %v; want 1 session ended", rep.Ended, err)
		}
		waitClosed(t, c, 30*time.Second)
		g.waitEnd(r.Session, EndPolicy)
		g.waitEvent("policy-reload-failed", "", "site.yaml:")
	})
}
