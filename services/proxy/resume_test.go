package proxy

import (
	"crypto"
	"io"
	"sync/atomic"
	"testing"
)

// countingSigner counts the signatures the gate's TLS key makes.
type countingSigner struct {
	crypto.Signer
	n atomic.Int64
}

func (c *countingSigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	c.n.Add(1)
	return c.Signer.Sign(r, digest, opts)
}

// SignMessage: crypto/tls hands the identity's signer whole messages.
func (c *countingSigner) SignMessage(r io.Reader, msg []byte, opts crypto.SignerOpts) ([]byte, error) {
	c.n.Add(1)
	return crypto.SignMessage(c.Signer, r, msg, opts)
}

// TestTunnelsResumeTLS: a client session's tunnels after the first resume
// their TLS session, so the gate's TPM key signs once, not once per TCP
// connection an engineering tool opens; a resumed connection's
// certificate is still checked: after a revocation it is refused.
func TestTunnelsResumeTLS(t *testing.T) {
	l := newLab(t)
	go serveEcho(l.listenPlant(t, 7))
	var key *countingSigner
	g := newGate(t, l, func(c *Config) {
		cert := *c.Certificate
		key = &countingSigner{Signer: cert.PrivateKey.(crypto.Signer)}
		cert.PrivateKey = key
		c.Certificate = &cert
	})
	g.setGrants(grant{rule: "alice-echo", user: "alice", asset: "echo-1", protocol: "tcp"})
	alice := g.mustLogin("alice")

	before := key.n.Load()
	const n = 6
	for i := range n {
		c, _, err := tunnel(t, alice, "echo-1", "tcp")
		if err != nil {
			t.Fatalf("tunnel %d: %v", i, err)
		}
		echoRoundTrip(t, c, "hello")
		if resumed := c.ConnectionState().DidResume; resumed != (i > 0) {
			t.Errorf("tunnel %d: resumed %v, want %v", i, resumed, i > 0)
		}
		c.Close()
	}
	// The notice stream and the login protocol's calls resume too: one
	// ticket cache for every protocol of the session.
	ns := openNotices(t, alice)
	ns.Close()
	if _, err := alice.Assets(t.Context()); err != nil {
		t.Fatal(err)
	}
	if signs := key.n.Load() - before; signs != 1 {
		t.Errorf("the gate's TLS key signed %d times for %d tunnels, a notice stream and an assets call, want 1 (the first, full handshake)", signs, n)
	}

	if _, err := g.users.Revoke("alice", "test: revoked"); err != nil {
		t.Fatal(err)
	}
	c, _, err := tunnel(t, alice, "echo-1", "tcp")
	if c != nil {
		resumed := c.ConnectionState().DidResume
		c.Close()
		t.Fatalf("tunnel after revocation opened (resumed %v)", resumed)
	}
	denied(t, err, "revoked")
	if signs := key.n.Load() - before; signs != 1 {
		t.Errorf("the refused tunnel made a full handshake (%d signatures in all): it did not test a resumed connection", signs)
	}
}
