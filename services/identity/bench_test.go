package identity

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"
	"time"

	"github.com/otgate/otgate/audit"
	"github.com/otgate/otgate/services/identity/api"
)

// benchSigners gives the TPM-backed device key (swtpm), the same key
// through the local socket, and a software P-256 key, with a self-signed
// certificate each.
func benchSigners(b *testing.B) map[string]*tls.Certificate {
	_, opener := startTPM(b)
	cfg := testConfig(b, opener)
	cfg.Log = discard{}
	id, err := Open(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { id.Close() })
	soft, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	softCert, err := selfSignedDeviceCert(soft, "bench", "soft", false, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	sock := serveBench(b, id)
	c, err := api.Dial(sock)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	remote, err := c.TLSCertificate()
	if err != nil {
		b.Fatal(err)
	}
	return map[string]*tls.Certificate{
		"tpm":        {Certificate: id.DeviceCertificate(), PrivateKey: id.Signer()},
		"tpm-socket": remote,
		"software":   {Certificate: [][]byte{softCert}, PrivateKey: soft},
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func serveBench(b *testing.B, id *Identity) string {
	sock := b.TempDir() + "/s"
	if len(sock) > 100 {
		b.Skip("temp dir path too long for a unix socket")
	}
	srv, err := Listen(id, ServerConfig{Socket: sock, GID: -1, Allow: map[uint32]string{uint32(osGetuid()): "bench"}})
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve()
	b.Cleanup(func() { srv.Close() })
	return sock
}

// BenchmarkSign: ECDSA P-256 signatures per second through the TPM
// (swtpm), through the identity socket, and with a software key.
func BenchmarkSign(b *testing.B) {
	certs := benchSigners(b)
	head := sha256.Sum256([]byte("record"))
	msg := audit.CheckpointMessage("bench", 1, 1, head[:])
	for _, name := range []string{"tpm", "tpm-socket", "software"} {
		signer := certs[name].PrivateKey.(crypto.Signer)
		b.Run(name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				if _, err := crypto.SignMessage(signer, rand.Reader, msg, crypto.SHA256); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "sigs/s")
		})
	}
}

// BenchmarkTLSHandshake: full TLS 1.3 handshakes per second (no
// resumption) against a server whose key is in the TPM, behind the
// socket, or in software. Client and server run in this process over an
// in-memory pipe.
func BenchmarkTLSHandshake(b *testing.B) {
	certs := benchSigners(b)
	for _, name := range []string{"tpm", "tpm-socket", "software"} {
		cert := certs[name]
		leaf, err := x509.ParseCertificate(cert.Certificate[0])
		if err != nil {
			b.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AddCert(leaf)
		srvCfg := &tls.Config{Certificates: []tls.Certificate{*cert}, MinVersion: tls.VersionTLS13, SessionTicketsDisabled: true}
		cliCfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13, InsecureSkipVerify: true,
			VerifyConnection: func(cs tls.ConnectionState) error { return verifyByURI(cs, pool) }}
		b.Run(name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				sc, cc := net.Pipe()
				srv := tls.Server(sc, srvCfg)
				errc := make(chan error, 1)
				go func() { errc <- srv.Handshake() }()
				if err := tls.Client(cc, cliCfg).Handshake(); err != nil {
					b.Fatal(err)
				}
				if err := <-errc; err != nil {
					b.Fatal(err)
				}
				sc.Close()
				cc.Close()
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "handshakes/s")
		})
	}
}
