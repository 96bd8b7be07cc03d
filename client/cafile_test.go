package client

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/otgate/otgate/services/proxy/wire"
)

// loginGateShowing is a gate that speaks the login ALPN: it issues a
// certificate for any login, signed by its own key, and answers assets
// with none. It shows the certificate in shown (a test may change it:
// another gate, or a man in the middle, at the same address); logins
// counts the login requests it received (credentials sent to it).
func loginGateShowing(t *testing.T, shown *atomic.Pointer[tls.Certificate]) (addr string, logins *atomic.Int32) {
	t.Helper()
	logins = new(atomic.Int32)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{MinVersion: tls.VersionTLS13,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return shown.Load(), nil },
		NextProtos:     []string{wire.ALPNLogin}, ClientAuth: tls.RequestClientCert})
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
				var req wire.Request
				if err := wire.ReadFrame(c, &req); err != nil {
					return
				}
				gate := shown.Load()
				switch req.Op {
				case wire.OpLogin:
					logins.Add(1)
					pub, err := x509.ParsePKIXPublicKey(req.PublicKey)
					if err != nil {
						wire.WriteFrame(c, wire.Response{Code: "bad", Error: err.Error()})
						return
					}
					tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: req.User},
						NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
						ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
					der, err := x509.CreateCertificate(rand.Reader, tmpl, gate.Leaf, pub, gate.PrivateKey)
					if err != nil {
						wire.WriteFrame(c, wire.Response{Code: "bad", Error: err.Error()})
						return
					}
					wire.WriteFrame(c, wire.Response{Certificate: [][]byte{der}, User: req.User, NotAfter: tmpl.NotAfter.Unix()})
				case wire.OpAssets:
					wire.WriteFrame(c, wire.Response{User: "alice", NotAfter: time.Now().Add(time.Hour).Unix()})
				default:
					wire.WriteFrame(c, wire.Response{})
				}
			}()
		}
	}()
	return ln.Addr().String(), logins
}

// A login with --ca given relative to the working directory stores a
// CA file the profile's later commands find from any directory (connect
// is rarely run where the CA file was downloaded).
func TestLoginWithRelativeCAFile(t *testing.T) {
	ca := newSiteCA(t)
	gate := ca.issue(t, []string{gate1ID})
	var shown atomic.Pointer[tls.Certificate]
	shown.Store(gate)
	addr, _ := loginGateShowing(t, &shown)
	work := t.TempDir()
	if err := os.WriteFile(filepath.Join(work, "gate-ca.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "otgate")
	t.Chdir(work)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := Login(ctx, LoginOptions{Gate: addr, User: "alice", Password: "pw", Code: "123456", CAFile: "gate-ca.pem", GateID: gate1ID, Dir: dir})
	if err != nil {
		t.Fatalf("login with --ca gate-ca.pem: %v", err)
	}
	if !res.FirstUse || res.Fingerprint != Fingerprint(gate.Leaf) {
		t.Fatalf("login: %+v, want the gate's key pinned through the CA", res)
	}
	t.Chdir(t.TempDir())
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(work, "gate-ca.pem"); s.Profile.CAFile != want {
		t.Errorf("profile's CA file %q, want %q", s.Profile.CAFile, want)
	}
	if _, err := s.Assets(ctx); err != nil {
		t.Errorf("assets from another directory: %v", err)
	}
}
