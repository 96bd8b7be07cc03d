package client

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/otgate/otgate/services/proxy/wire"
)

func selfSigned(t *testing.T, cn string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// oldGate is a gate from before the notice stream: it speaks only the
// tunnel ALPN and accepts every tunnel with a deadline until from now.
func oldGate(t *testing.T, until time.Duration) (addr, pin string) {
	t.Helper()
	cert := selfSigned(t, "gate")
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert},
		NextProtos: []string{wire.ALPNTunnel, wire.ALPNLogin}, ClientAuth: tls.RequireAnyClientCert})
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
			go func() {
				defer c.Close()
				if _, err := wire.ReadHeader(c); err != nil {
					return
				}
				wire.WriteFrame(c, wire.Reply{Accept: true, Rule: "night-shift", Session: "s1", Until: time.Now().Add(until).Unix()})
				io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String(), Fingerprint(cert.Leaf)
}

// A gate that refuses the notice ALPN: the forwarder says so once and
// warns from its local timer, as before.
func TestForwarderFallsBackToLocalTimer(t *testing.T) {
	addr, pin := oldGate(t, 3*time.Second)
	cert := selfSigned(t, "alice")
	s := &Session{Profile: &Profile{Gate: addr, Pin: pin}, cert: &cert}
	streams := make(chan error, 4)
	warns := make(chan time.Duration, 4)
	f := &Forwarder{Session: s, Asset: "plc-7", Protocol: "modbus", WarnBefore: time.Second,
		OnNoticeStream: func(err error) { streams <- err },
		OnWarn:         func(_ *wire.Reply, left time.Duration) { warns <- left }}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Serve(ctx, ln) }()
	defer func() { cancel(); <-done }()
	select {
	case err := <-streams:
		if !errors.Is(err, ErrNoticesUnsupported) {
			t.Fatalf("notice stream: %v, want ErrNoticesUnsupported", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no word on the notice stream")
	}
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("x"))
	io.ReadFull(c, make([]byte, 1))
	select {
	case left := <-warns:
		if left <= 0 || left > 2*time.Second {
			t.Fatalf("local warning with %v left", left)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no local warning")
	}
	select {
	case err := <-streams:
		t.Fatalf("told about the notice stream again: %v", err)
	default:
	}
}

// A notice can overtake the tunnel's reply: it is kept and delivered
// when the session is known.
func TestNoticeBeforeReply(t *testing.T) {
	got := make(chan wire.Notice, 4)
	f := &Forwarder{OnNotice: func(_ *wire.Reply, n wire.Notice) { got <- n }}
	w := newNoticeWatch(f)
	w.setUp(true)
	w.deliver(wire.Notice{Kind: wire.NoticeDeadline, Session: "s9", Until: 42})
	w.deliver(wire.Notice{Kind: wire.NoticeDeadline, Session: "other", Until: 43})
	select {
	case n := <-got:
		t.Fatalf("notice %+v delivered for an unknown session", n)
	default:
	}
	tr := w.track(&wire.Reply{Accept: true, Session: "s9", Until: 40}, nil)
	if n := <-got; n.Session != "s9" || n.Until != 42 {
		t.Fatalf("replayed %+v", n)
	}
	if tr.reply.Until != 42 {
		t.Fatalf("tracked deadline %d, want 42", tr.reply.Until)
	}
	w.deliver(wire.Notice{Kind: wire.NoticeEnded, Session: "s9", Reason: "decision expired", ByGate: true})
	start := time.Now()
	w.done(tr)
	if time.Since(start) > time.Second {
		t.Fatal("done waited although the ended notice had come")
	}
}

// A gate that closes each notice stream right after its hello (a limit,
// a middlebox) is not answered with a loop of handshakes: the forwarder
// waits before reopening, longer each time.
func TestNoticeStreamLostAtOnceIsNotReopenedInALoop(t *testing.T) {
	cert := selfSigned(t, "gate")
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert},
		NextProtos: []string{wire.ALPNNotices, wire.ALPNTunnel}, ClientAuth: tls.RequireAnyClientCert})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	opened := make(chan time.Time, 10000)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				tc := c.(*tls.Conn)
				if tc.Handshake() != nil || tc.ConnectionState().NegotiatedProtocol != wire.ALPNNotices {
					return
				}
				opened <- time.Now()
				wire.WriteFrame(tc, wire.Notice{Kind: wire.NoticeHello, User: "alice"})
			}()
		}
	}()
	alice := selfSigned(t, "alice")
	s := &Session{Profile: &Profile{Gate: ln.Addr().String(), Pin: Fingerprint(cert.Leaf)}, cert: &alice, resume: tls.NewLRUClientSessionCache(8)}
	var reports []error
	f := &Forwarder{Session: s, Asset: "plc-7", Protocol: "modbus", OnNoticeStream: func(err error) { reports = append(reports, err) }}
	fl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := f.Serve(ctx, fl); err != nil {
		t.Fatal(err)
	}
	var at []time.Duration
	for len(opened) > 0 {
		at = append(at, (<-opened).Sub(start).Round(time.Millisecond))
	}
	// Opened at once, again 2 s after it was lost, then 4 s after that.
	if len(at) < 2 || len(at) > 3 {
		t.Fatalf("notice stream opened %d times in 5 s, at %v...; want 2 (at once, and again 2 s after it was lost)", len(at), at[:min(len(at), 5)])
	}
	if len(reports) > 2*len(at) {
		t.Errorf("%d reports for %d streams: %v", len(reports), len(at), reports)
	}
}
