package identity

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/otgate/otgate/audit"
	"github.com/otgate/otgate/internal/syncbuf"
	"github.com/otgate/otgate/services/identity/api"
)

// clientEnv makes the test binary act as a socket client (see TestMain):
// it is run as another uid to test the SO_PEERCRED check.
const clientEnv = "OTGATE_IDENTITY_TEST_CLIENT_SOCKET"

func TestMain(m *testing.M) {
	if sock := os.Getenv(clientEnv); sock != "" {
		c, err := api.Dial(sock)
		if err != nil {
			fmt.Println("DIAL-ERROR", err)
			os.Exit(0)
		}
		st, err := c.Status()
		switch {
		case errors.Is(err, api.ErrDenied):
			fmt.Println("DENIED", err)
		case err != nil:
			fmt.Println("ERROR", err)
		default:
			fmt.Println("OK caller=" + st.Caller)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// serve opens the API of id on a fresh socket in a directory everyone can
// traverse, with the socket's group gid.
func serve(t *testing.T, id *Identity, gid int, allow map[uint32]string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "idsock")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "identity.sock")
	srv, err := Listen(id, ServerConfig{Socket: sock, GID: gid, Allow: allow})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve() }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return sock
}

func TestSocketSignTLSAndSecrets(t *testing.T) {
	_, opener := startTPM(t)
	id, err := Open(testConfig(t, opener))
	if err != nil {
		t.Fatal(err)
	}
	defer id.Close()
	sock := serve(t, id, -1, map[uint32]string{uint32(os.Getuid()): "proxy"})
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o660 {
		t.Fatalf("socket mode %v, want 0660", perm)
	}
	c, err := api.Dial(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	// Sign an audit checkpoint and verify it.
	head := sha256.Sum256([]byte("record 42"))
	sig, err := c.SignMessage(audit.CheckpointMessage("log-1", 1, 42, head[:]), crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	pub := id.Signer().Public().(*ecdsa.PublicKey)
	if !ecdsa.VerifyASN1(pub, audit.CheckpointDigest("log-1", 1, 42, head[:]), sig) {
		t.Fatal("signature from the socket does not verify with the device key")
	}
	checkSignRefusals(t, c, id)

	// TLS 1.3 with the TPM-backed signer behind the socket.
	cert, err := c.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	tlsHandshake(t, cert, cert.Leaf)

	// Secrets are per calling service.
	if err := c.Seal("users", []byte("alice:hash")); err != nil {
		t.Fatal(err)
	}
	got, err := c.Unseal("users")
	if err != nil || string(got) != "alice:hash" {
		t.Fatalf("unseal = %q, %v", got, err)
	}
	if _, err := os.Stat(filepath.Join(id.cfg.StateDir, SecretsDir, "proxy", "users.cbor")); err != nil {
		t.Fatalf("secret not stored under the caller's name: %v", err)
	}
	if _, err := c.Unseal("nothing"); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("unseal of a missing secret: %v, want not-found", err)
	}

	// Workload certificates: at most one hour, SPIFFE ID of the caller,
	// mutual TLS between two services.
	if _, _, err := c.WorkloadCertificate(2 * time.Hour); err == nil {
		t.Fatal("a two-hour workload certificate was issued")
	}
	wc, pool, err := c.WorkloadCertificate(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if life := wc.Leaf.NotAfter.Sub(wc.Leaf.NotBefore); life > time.Hour {
		t.Fatalf("workload certificate valid for %v", life)
	}
	want := WorkloadURI(id.Site(), id.Serial(), "proxy").String()
	if len(wc.Leaf.URIs) != 1 || wc.Leaf.URIs[0].String() != want {
		t.Fatalf("workload URIs %v, want [%s]", wc.Leaf.URIs, want)
	}
	wc2, _, err := c.WorkloadCertificate(10 * time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	mutualTLS(t, wc, wc2, pool)
}

// tlsHandshake runs a TLS 1.3 handshake between a crypto/tls server using
// cert and a client trusting root.
func tlsHandshake(t testing.TB, cert *tls.Certificate, root *x509.Certificate) {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(root)
	sc, cc := net.Pipe()
	defer sc.Close()
	defer cc.Close()
	srv := tls.Server(sc, &tls.Config{Certificates: []tls.Certificate{*cert}, MinVersion: tls.VersionTLS13})
	errc := make(chan error, 1)
	go func() { errc <- srv.Handshake() }()
	cli := tls.Client(cc, &tls.Config{RootCAs: pool, ServerName: "unused", MinVersion: tls.VersionTLS13,
		VerifyConnection: func(cs tls.ConnectionState) error { return verifyByURI(cs, pool) }, InsecureSkipVerify: true})
	if err := cli.Handshake(); err != nil {
		t.Fatalf("client handshake: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("server handshake: %v", err)
	}
	if v := cli.ConnectionState().Version; v != tls.VersionTLS13 {
		t.Fatalf("TLS version %x, want 1.3", v)
	}
}

// verifyByURI checks the chain against roots; the gate is named by its
// SPIFFE URI, not a DNS name, so host name checking is replaced by this.
func verifyByURI(cs tls.ConnectionState, roots *x509.CertPool) error {
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	return err
}

func mutualTLS(t *testing.T, a, b *tls.Certificate, pool *x509.CertPool) {
	t.Helper()
	sc, cc := net.Pipe()
	defer sc.Close()
	defer cc.Close()
	srv := tls.Server(sc, &tls.Config{Certificates: []tls.Certificate{*a}, ClientCAs: pool,
		ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS13})
	errc := make(chan error, 1)
	go func() { errc <- srv.Handshake() }()
	cli := tls.Client(cc, &tls.Config{Certificates: []tls.Certificate{*b}, RootCAs: pool,
		ServerName: a.Leaf.DNSNames[0], MinVersion: tls.VersionTLS13})
	if err := cli.Handshake(); err != nil {
		t.Fatalf("mTLS client: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("mTLS server: %v", err)
	}
	if n := len(srv.ConnectionState().PeerCertificates); n == 0 {
		t.Fatal("server saw no client certificate")
	}
}

// TestSocketRefusesUnlistedUID runs a client as uid/gid 65534 (nobody):
// the socket's group lets it connect, the SO_PEERCRED check refuses it;
// with 65534 on the allow-list it is served.
func TestSocketRefusesUnlistedUID(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to run a client as another uid")
	}
	_, opener := startTPM(t)
	id, err := Open(testConfig(t, opener))
	if err != nil {
		t.Fatal(err)
	}
	defer id.Close()

	// A copy of this test binary that uid 65534 can execute.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	binDir, err := os.MkdirTemp("", "idclient")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(binDir) })
	os.Chmod(binDir, 0o755)
	bin := filepath.Join(binDir, "client")
	copyFile(t, self, bin)

	run := func(sock string) string {
		cmd := exec.Command(bin, "-test.run=^$")
		cmd.Env = append(os.Environ(), clientEnv+"="+sock)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("client as uid 65534: %v\n%s", err, out)
		}
		return strings.TrimSpace(string(out))
	}

	refused := serve(t, id, 65534, map[uint32]string{0: "admin"})
	if out := run(refused); !strings.HasPrefix(out, "DENIED") {
		t.Fatalf("uid 65534 not on the allow-list: got %q, want DENIED", out)
	}
	served := serve(t, id, 65534, map[uint32]string{0: "admin", 65534: "proxy"})
	if out := run(served); out != "OK caller=proxy" {
		t.Fatalf("uid 65534 on the allow-list: got %q, want OK caller=proxy", out)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestSocketRefusesRootWithoutAdmin runs a client as root with and
// without CAP_SYS_ADMIN (setpriv takes it out of the bounding set, so the
// exec leaves it out of the effective set, as sandbox.LimitCapabilities
// leaves the gate's root services): an administrator is served, a gate
// service is refused and the log names the reason.
func TestSocketRefusesRootWithoutAdmin(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root")
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("no setpriv (util-linux)")
	}
	id, log := openLogged(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	sock := serve(t, id, -1, map[uint32]string{0: "admin"})
	run := func(args ...string) string {
		cmd := exec.Command(args[0], append(args[1:], self, "-test.run=^$")...)
		cmd.Env = append(os.Environ(), clientEnv+"="+sock)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("client %q: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if out := run("env"); out != "OK caller=admin" {
		t.Fatalf("root with its capabilities: got %q, want OK caller=admin", out)
	}
	out := run(setpriv, "--inh-caps=-sys_admin", "--bounding-set=-sys_admin")
	if !strings.HasPrefix(out, "DENIED") || !strings.Contains(out, "lacks CAP_SYS_ADMIN") {
		t.Fatalf("root without CAP_SYS_ADMIN: got %q, want DENIED naming CAP_SYS_ADMIN", out)
	}
	if !strings.Contains(log.String(), "refused a connection from uid 0") {
		t.Errorf("no refusal in the log:\n%s", log.String())
	}
}

// checkSignRefusals: the device key signs a TLS 1.3 server
// CertificateVerify and an audit checkpoint, nothing else. Each refusal
// is a bad request that names what it was given; the signable messages
// beside them are signed (the refusals are not a broken fixture).
func checkSignRefusals(t *testing.T, c *api.Client, id *Identity) {
	t.Helper()
	pub := id.Signer().Public().(*ecdsa.PublicKey)
	spaces := strings.Repeat(" ", 64)
	transcript := sha256.Sum256([]byte("a handshake"))
	serverCV := []byte(spaces + "TLS 1.3, server CertificateVerify\x00" + string(transcript[:]))
	head := sha256.Sum256([]byte("record 9"))
	checkpoint := audit.CheckpointMessage("log-1", 3, 9, head[:])
	for _, msg := range [][]byte{serverCV, checkpoint} {
		sig, err := c.SignMessage(msg, crypto.SHA256)
		if err != nil {
			t.Fatalf("sign %q: %v", msg[64:], err)
		}
		if d := sha256.Sum256(msg); !ecdsa.VerifyASN1(pub, d[:], sig) {
			t.Fatalf("signature of %q does not verify", msg[64:])
		}
	}

	// A certificate the device key (a CA) would sign for a compromised
	// caller: its TBS is what the signature covers.
	leafKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "not the gate"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &leafKey.PublicKey, leafKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	var badHead [16]byte
	refused := map[string]struct {
		msg  []byte
		h    crypto.Hash
		says string
	}{
		"a certificate's TBS":               {cert.RawTBSCertificate, crypto.SHA256, "neither"},
		"a bare digest":                     {head[:], crypto.SHA256, "neither"},
		"an empty message":                  {nil, crypto.SHA256, "neither"},
		"a client CertificateVerify":        {[]byte(spaces + "TLS 1.3, client CertificateVerify\x00" + string(transcript[:])), crypto.SHA256, "neither"},
		"a server CertificateVerify, short": {serverCV[:len(serverCV)-1], crypto.SHA256, "31-byte transcript hash"},
		"a server CertificateVerify, long":  {append(append([]byte(nil), serverCV...), 0), crypto.SHA256, "33-byte transcript hash"},
		"a checkpoint of another domain":    {mustCBOR(t, []any{"otgate-audit-checkpoint-v0", "log-1", 3, 9, head[:]}), crypto.SHA256, "domain"},
		"a checkpoint with a short head":    {mustCBOR(t, []any{"otgate-audit-checkpoint-v1", "log-1", 3, 9, badHead[:]}), crypto.SHA256, "head of 16 bytes"},
		"a checkpoint backwards":            {audit.CheckpointMessage("log-1", 9, 3, head[:]), crypto.SHA256, "after last"},
		"a checkpoint with a sixth element": {mustCBOR(t, []any{"otgate-audit-checkpoint-v1", "log-1", 3, 9, head[:], 1}), crypto.SHA256, "checkpoint"},
		"a checkpoint with trailing bytes":  {append(append([]byte(nil), checkpoint...), 0), crypto.SHA256, "checkpoint"},
		"a checkpoint with MD5":             {checkpoint, crypto.MD5, "unsupported hash"},
	}
	for what, r := range refused {
		_, err := c.SignMessage(r.msg, r.h)
		var ae *api.Error
		if !errors.As(err, &ae) || ae.Code != api.CodeBadRequest || !strings.Contains(ae.Msg, r.says) {
			t.Errorf("%s: %v, want a bad request saying %q", what, err, r.says)
		}
	}
	// The raw digest operation of earlier releases is gone.
	if _, err := c.Call(&api.Request{Op: "sign", Digest: head[:], Hash: uint(crypto.SHA256)}); !errors.Is(err, api.ErrBadRequest) {
		t.Errorf("op sign: %v, want a bad request", err)
	}
	// The client's crypto.Signer hands whole messages only.
	cert2, err := c.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cert2.PrivateKey.(crypto.Signer).Sign(rand.Reader, head[:], crypto.SHA256); !errors.Is(err, api.ErrDigestSigning) {
		t.Errorf("Signer.Sign of a digest: %v, want ErrDigestSigning", err)
	}
}

func mustCBOR(t *testing.T, v any) []byte {
	t.Helper()
	b, err := cbor.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSocketRefusesRootThatLeft: a root caller that closed its end before
// the service read its capabilities is refused, since its pid may be
// another process's by then; one still connected is served, also when it
// shut its writing side. The connections are made before the service
// accepts, so the order is fixed.
func TestSocketRefusesRootThatLeft(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the check is for uid-0 callers")
	}
	id, log := openLogged(t)
	dir, err := os.MkdirTemp("", "idsock") // short: a socket path has 107 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "identity.sock")
	srv, err := Listen(id, ServerConfig{Socket: sock, GID: -1, Allow: map[uint32]string{0: "admin"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })

	// Queued in the backlog: a request, then the end closed.
	gone, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	if err := api.WriteMessage(gone, &api.Request{Op: api.OpStatus}); err != nil {
		t.Fatal(err)
	}
	gone.Close()
	// Queued too: a request, then only the writing side shut. Its
	// process still holds the connection: it is served.
	half, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer half.Close()
	if err := api.WriteMessage(half, &api.Request{Op: api.OpStatus}); err != nil {
		t.Fatal(err)
	}
	if err := half.(*net.UnixConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	half.SetDeadline(time.Now().Add(10 * time.Second))
	var rsp api.Response
	if err := api.ReadMessage(half, &rsp); err != nil || rsp.Code != "" || rsp.Status == nil || rsp.Status.Caller != "admin" {
		t.Fatalf("a root caller that shut its writing side: %+v, %v", rsp, err)
	}

	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(log.String(), "closed its end of the connection") {
		if time.Now().After(deadline) {
			t.Fatalf("a caller gone before its capabilities were read was not refused:\n%s", log.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The same process, still connected, is served.
	c, err := api.Dial(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if st, err := c.Status(); err != nil || st.Caller != "admin" {
		t.Fatalf("a connected root caller: %+v, %v", st, err)
	}
}

// openLogged opens a new identity on a fresh swtpm, its log kept (closed
// in t.Cleanup).
func openLogged(t *testing.T) (*Identity, *syncbuf.Buffer) {
	t.Helper()
	_, opener := startTPM(t)
	cfg := testConfig(t, opener)
	log := &syncbuf.Buffer{}
	cfg.Log = log
	id, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { id.Close() })
	return id, log
}
