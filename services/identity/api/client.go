package api

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// Client is a connection to the identity service. It is safe for
// concurrent use; calls are serialised on one connection. When the
// connection breaks (init restarted the service), the next call dials the
// socket again.
type Client struct {
	mu   sync.Mutex
	path string
	conn net.Conn // nil after a broken exchange until the next dial
}

// Dial connects to the service socket.
func Dial(path string) (*Client, error) {
	c, err := net.Dial("unix", path)
	if err != nil {
		return nil, fmt.Errorf("identity: connect %s: %w", path, err)
	}
	return &Client{path: path, conn: c}, nil
}

// Close closes the connection.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.drop()
	return nil
}

// Call sends req and returns the response; a response with a Code becomes
// an *Error. A connection that breaks before an answer arrives (the
// service restarted) is dialled again and the request sent once more:
// every operation is safe to repeat (sign, seal and the next-boot slot
// write the same result again; a second workload certificate is as good
// as the first).
func (c *Client) Call(req *Request) (*Response, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	rsp, err := c.exchange(req)
	if err != nil && c.conn != nil {
		// A connection that broke: once more on a new one.
		c.drop()
		rsp, err = c.exchange(req)
	}
	if err != nil {
		c.drop()
		return nil, err
	}
	if rsp.Code != "" {
		return nil, &Error{Op: req.Op, Code: rsp.Code, Msg: rsp.Error}
	}
	return rsp, nil
}

func (c *Client) drop() {
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
}

// exchange sends req on the current connection (dialling first when there
// is none) and reads the answer; an error means no answer arrived.
func (c *Client) exchange(req *Request) (*Response, error) {
	if c.conn == nil {
		conn, err := net.Dial("unix", c.path)
		if err != nil {
			return nil, fmt.Errorf("identity %s: connect %s: %w", req.Op, c.path, err)
		}
		c.conn = conn
	}
	werr := WriteMessage(c.conn, req)
	// Even when the write fails the server may have answered (a refusal
	// is sent before the request is read): read it.
	var rsp Response
	if err := ReadMessage(c.conn, &rsp); err != nil {
		if werr != nil {
			return nil, fmt.Errorf("identity %s: send to %s: %w", req.Op, c.path, werr)
		}
		if err == io.EOF {
			return nil, fmt.Errorf("identity %s: %s closed the connection", req.Op, c.path)
		}
		return nil, fmt.Errorf("identity %s: read from %s: %w", req.Op, c.path, err)
	}
	return &rsp, nil
}

// Status asks for the service state.
func (c *Client) Status() (*Status, error) {
	rsp, err := c.Call(&Request{Op: OpStatus})
	if err != nil {
		return nil, err
	}
	if rsp.Status == nil {
		return nil, fmt.Errorf("identity status: empty answer")
	}
	return rsp.Status, nil
}

// SignMessage has the device key sign msg hashed with h (OpSignMessage:
// a TLS 1.3 server CertificateVerify or an audit checkpoint); the result
// is ASN.1 DER ECDSA.
func (c *Client) SignMessage(msg []byte, h crypto.Hash) ([]byte, error) {
	rsp, err := c.Call(&Request{Op: OpSignMessage, Data: msg, Hash: uint(h)})
	if err != nil {
		return nil, err
	}
	return rsp.Signature, nil
}

// Seal stores a named secret of the calling service.
func (c *Client) Seal(name string, data []byte) error {
	_, err := c.Call(&Request{Op: OpSeal, Name: name, Data: data})
	return err
}

// Unseal returns a named secret of the calling service.
func (c *Client) Unseal(name string) ([]byte, error) {
	rsp, err := c.Call(&Request{Op: OpUnseal, Name: name})
	if err != nil {
		return nil, err
	}
	return rsp.Data, nil
}

// TLSCertificate returns the device certificate chain with a private key
// that signs through the service (the key stays in the TPM), for the
// proxy's listener.
func (c *Client) TLSCertificate() (*tls.Certificate, error) {
	rsp, err := c.Call(&Request{Op: OpTLSCert})
	if err != nil {
		return nil, err
	}
	if len(rsp.Certs) == 0 {
		return nil, fmt.Errorf("identity tls-cert: no certificate in the answer")
	}
	leaf, err := x509.ParseCertificate(rsp.Certs[0])
	if err != nil {
		return nil, fmt.Errorf("identity tls-cert: %w", err)
	}
	pub, ok := leaf.PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("identity tls-cert: device key is %T, want ECDSA", leaf.PublicKey)
	}
	return &tls.Certificate{Certificate: rsp.Certs, PrivateKey: &Signer{c: c, pub: pub}, Leaf: leaf}, nil
}

// Signer is a crypto.MessageSigner for the device key that calls the
// service. crypto/tls and the audit log hand it whole messages
// (crypto.SignMessage); a bare digest is refused, because the service
// signs only messages it recognises.
type Signer struct {
	c   *Client
	pub *ecdsa.PublicKey
}

// ErrDigestSigning is Signer.Sign's error.
var ErrDigestSigning = errors.New("identity: the device key signs whole messages only (a TLS 1.3 handshake, an audit checkpoint): use crypto.SignMessage")

// Public is the device public key.
func (s *Signer) Public() crypto.PublicKey { return s.pub }

// Sign refuses: a digest does not show what it signs (ErrDigestSigning).
func (s *Signer) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	return nil, ErrDigestSigning
}

// SignMessage asks the service to sign msg.
func (s *Signer) SignMessage(_ io.Reader, msg []byte, opts crypto.SignerOpts) ([]byte, error) {
	return s.c.SignMessage(msg, opts.HashFunc())
}

// WorkloadCertificate makes a fresh P-256 key, has the service certify it
// for ttl (at most one hour) and returns the certificate with its key, and
// a pool holding the workload CA to verify the other services with.
func (c *Client) WorkloadCertificate(ttl time.Duration) (*tls.Certificate, *x509.CertPool, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		return nil, nil, err
	}
	rsp, err := c.Call(&Request{Op: OpWorkloadCert, CSR: csr, TTLSeconds: int64(ttl / time.Second)})
	if err != nil {
		return nil, nil, err
	}
	if len(rsp.Certs) != 2 {
		return nil, nil, fmt.Errorf("identity workload-cert: %d certificates in the answer, want leaf and CA", len(rsp.Certs))
	}
	leaf, err := x509.ParseCertificate(rsp.Certs[0])
	if err != nil {
		return nil, nil, fmt.Errorf("identity workload-cert: %w", err)
	}
	ca, err := x509.ParseCertificate(rsp.Certs[1])
	if err != nil {
		return nil, nil, fmt.Errorf("identity workload-cert: CA: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &tls.Certificate{Certificate: rsp.Certs, PrivateKey: key, Leaf: leaf}, pool, nil
}

// SealNextBoot asks the service (as root) to seal the data key for the
// next boot, which will extend the boot measurement digest.
func (c *Client) SealNextBoot(digest [32]byte) error {
	_, err := c.Call(&Request{Op: OpSealNextBoot, Digest: digest[:]})
	return err
}

// AuditAnchor reads the TPM counter that anchors the audit log.
func (c *Client) AuditAnchor() (value uint64, defined bool, err error) {
	rsp, err := c.Call(&Request{Op: OpAuditAnchor})
	if err != nil {
		return 0, false, err
	}
	if rsp.Anchor == nil {
		return 0, false, fmt.Errorf("identity %s: empty answer", OpAuditAnchor)
	}
	return rsp.Anchor.Value, rsp.Anchor.Defined, nil
}

// AdvanceAuditAnchor advances the anchor counter by one from the value
// read (from, fromDefined) and returns the value it then has.
func (c *Client) AdvanceAuditAnchor(from uint64, fromDefined bool) (uint64, error) {
	rsp, err := c.Call(&Request{Op: OpAdvanceAuditAnchor, Anchor: from, AnchorDefined: fromDefined})
	if err != nil {
		return 0, err
	}
	if rsp.Anchor == nil || !rsp.Anchor.Defined {
		return 0, fmt.Errorf("identity %s: empty answer", OpAdvanceAuditAnchor)
	}
	return rsp.Anchor.Value, nil
}

// AuditAnchor is the audit log's anchor (audit.Anchor): the TPM counter
// the identity service keeps, read and advanced through Client. The
// proxy's log and `otgate admin --direct` anchor to it alike.
type AuditAnchor struct{ Client *Client }

// Read is Client.AuditAnchor.
func (a AuditAnchor) Read() (uint64, bool, error) { return a.Client.AuditAnchor() }

// Advance is Client.AdvanceAuditAnchor.
func (a AuditAnchor) Advance(from uint64, fromDefined bool) (uint64, error) {
	return a.Client.AdvanceAuditAnchor(from, fromDefined)
}

// DevModeAuditReason is why the audit records written while the identity
// service runs in dev mode are marked (audit.WithDevMode): by the proxy
// and by `otgate admin --direct` alike.
const DevModeAuditReason = "identity service in dev mode: software key, no TPM"
