package client

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/otgate/otgate/services/proxy/wire"
)

// DefaultPort is the gate's port when the URL names none.
const DefaultPort = "8443"

// ParseGate turns "otgate://host[:port]", "https://host[:port]" or
// "host[:port]" into host:port.
func ParseGate(s string) (string, error) {
	if strings.Contains(s, "://") {
		u, err := url.Parse(s)
		if err != nil {
			return "", fmt.Errorf("gate %q: %w", s, err)
		}
		if u.Scheme != "otgate" && u.Scheme != "https" {
			return "", fmt.Errorf("gate %q: scheme %q (want otgate:// or https://)", s, u.Scheme)
		}
		if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			return "", fmt.Errorf("gate %q: a gate is named by host and port alone (otgate://host[:port])", s)
		}
		s = u.Host
	}
	if s == "" {
		return "", errors.New("gate address is empty")
	}
	in := s
	if _, _, err := net.SplitHostPort(s); err != nil {
		s = net.JoinHostPort(strings.Trim(s, "[]"), DefaultPort)
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", fmt.Errorf("gate %q: %v", in, err)
	}
	if host == "" {
		return "", fmt.Errorf("gate %q: no host name or address", in)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || port != strconv.Itoa(n) {
		return "", fmt.Errorf("gate %q: port %q is not a number from 1 to 65535", in, port)
	}
	return s, nil
}

// Fingerprint is the hex SHA-256 of a certificate's public key info.
func Fingerprint(c *x509.Certificate) string {
	h := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return hex.EncodeToString(h[:])
}

// gateTrust is what checks the gate: its key's pin, a CA file, and with
// the CA file the gate identity its certificate must name.
type gateTrust struct {
	Pin    string
	CAFile string
	// GateID, with CAFile, is the gate identity (spiffe://SITE/gate/SERIAL)
	// the certificate must name; "" takes any (learned, for the caller
	// to bind or to ask about).
	GateID string
}

// learnedGate is what a gate showed: its key's fingerprint, and with a
// CA file the gate identity its certificate names.
type learnedGate struct {
	Fingerprint string
	GateID      string
}

// tlsConfig checks the gate by pin and/or CA file and gate identity (t).
// learned receives what the gate showed (the fingerprint when the pin is
// empty: first use; the gate identity when the CA verified it).
func tlsConfig(alpn string, t gateTrust, cert *tls.Certificate, learned *learnedGate) (*tls.Config, error) {
	pin, caFile := t.Pin, t.CAFile
	var roots *x509.CertPool
	if caFile != "" {
		b, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("CA file: %w", err)
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("CA file %s: no PEM certificate in it", caFile)
		}
	}
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS13,
		NextProtos: []string{alpn},
		// The gate's certificate names the device (a SPIFFE URI), not a
		// DNS name: it is checked by pin or CA below, never skipped.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("gate sent no certificate")
			}
			leaf := cs.PeerCertificates[0]
			if roots != nil {
				inter := x509.NewCertPool()
				for _, c := range cs.PeerCertificates[1:] {
					inter.AddCert(c)
				}
				if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter}); err != nil {
					return fmt.Errorf("gate certificate does not verify with %s: %w", caFile, err)
				}
				// The CA vouches for every certificate it issued: the
				// gate is the one whose identity the certificate names.
				id, err := gateIdentity(leaf)
				if err != nil {
					return fmt.Errorf("gate certificate (verified with %s) %w; nothing was sent to it", caFile, err)
				}
				if t.GateID != "" && id != t.GateID {
					return &IdentityChangedError{CAFile: caFile, Want: t.GateID, Got: id}
				}
				if learned != nil {
					learned.GateID = id
				}
			}
			fp := Fingerprint(leaf)
			switch {
			case pin == "" && learned != nil:
				learned.Fingerprint = fp
			case pin == "":
				return errors.New("no pin for the gate: log in again")
			case pin != fp:
				return &KeyChangedError{Pinned: pin, Got: fp}
			}
			if cs.NegotiatedProtocol != alpn {
				return fmt.Errorf("gate does not speak %s (ALPN %q)", alpn, cs.NegotiatedProtocol)
			}
			return nil
		},
	}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return cfg, nil
}

// KeyChangedError is a gate showing another key than the one pinned (or
// given as the pin): the connection ends before anything is sent.
type KeyChangedError struct {
	Gate   string
	Pinned string // the pin, as Fingerprint gives it
	Got    string // the key the gate showed
	// Given: the pin was the one given to Login (LoginOptions.Pin), not
	// one stored at an earlier login.
	Given bool
	// Confirmed: the pin given was the key the user confirmed at a
	// prompt (LoginOptions.Confirmed): the gate showed another since.
	Confirmed bool
}

func (e *KeyChangedError) Error() string {
	if e.Confirmed {
		return fmt.Sprintf("the key of gate %s is not the one confirmed at the prompt: you confirmed SHA-256 %s, the gate showed SHA-256 %s after the prompt "+
			"(another server answered at this address: someone may be intercepting the connection); no credential was sent: "+
			"compare the key with the gate's console (the proxy's \"gate key SHA-256\" line)", e.Gate, e.Pinned, e.Got)
	}
	if e.Given {
		return fmt.Sprintf("the key of gate %s is not the pin given: pin %s, the gate showed SHA-256 %s; no credential was sent: compare the pin with the gate's console (the proxy's \"gate key SHA-256\" line)", e.Gate, e.Pinned, e.Got)
	}
	return fmt.Sprintf("WARNING: gate certificate changed: the key of gate %s is not the one pinned (SHA-256 %s), it showed SHA-256 %s: "+
		"someone may be intercepting the connection, or the gate's identity was reset; nothing was sent to it. "+
		"Ask the gate's administrator for the key its console shows (the proxy's \"gate key SHA-256\" line); only if it is %s, log in again with --pin %s",
		e.Gate, e.Pinned, e.Got, e.Got, e.Got)
}

func dialTLS(ctx context.Context, gate string, cfg *tls.Config) (*tls.Conn, error) {
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 15 * time.Second}, Config: cfg}
	c, err := d.DialContext(ctx, "tcp", gate)
	var kc *KeyChangedError
	if errors.As(err, &kc) {
		kc.Gate = gate
		return nil, kc
	}
	var ic *IdentityChangedError
	if errors.As(err, &ic) {
		ic.Gate = gate
		return nil, ic
	}
	if err != nil {
		return nil, fmt.Errorf("connect to gate %s: %w", gate, err)
	}
	return c.(*tls.Conn), nil
}

// LoginOptions are the inputs of Login.
type LoginOptions struct {
	Gate     string // as ParseGate takes it
	User     string
	Password string
	Code     string
	// CAFile is stored as an absolute path.
	CAFile string
	// GateID, with CAFile, is the gate identity (spiffe://SITE/gate/SERIAL,
	// CheckGateID) the user expects: the gate's certificate must name it
	// before any credential is sent. It replaces the identity and the
	// pin stored for the gate (a gate replaced on purpose). Without it,
	// the identity stored at an earlier login is required; a first login
	// with CAFile and neither GateID nor a pin (given or stored) sends
	// nothing and returns an *IdentityFirstUseError naming the identity,
	// unless TrustFirstUse.
	GateID string
	// Pin is the gate key's fingerprint (Fingerprint; the gate's console
	// prints it) the user checked: the gate must show that key before
	// any credential is sent. It replaces a pin stored for the gate.
	Pin string
	// Confirmed: Pin or GateID is the key or identity GateFingerprint or
	// GateIdentity showed and the user confirmed at a prompt (otgate
	// login's first login at a terminal), not one the user gave: a gate
	// showing another is refused with an error that says it changed
	// since the prompt.
	Confirmed bool
	// TrustFirstUse lets a first login with neither a pin (given or
	// stored) nor CAFile send the credentials to whatever key the gate
	// shows and pin it, and one with CAFile but no gate identity (given
	// or stored) nor pin bind the profile to whatever identity the CA
	// vouches for. Without it such a login sends nothing and returns a
	// *FirstUseError naming the key (an *IdentityFirstUseError naming the
	// identity), for the user to check.
	TrustFirstUse bool
	// Dir is the profile directory (DefaultDir when empty).
	Dir string
}

// FirstUseError is Login's answer on a first connection to a gate whose
// key nothing vouches for (no pin, no CA): no credential was sent.
type FirstUseError struct {
	Gate        string
	Fingerprint string // of the key the gate showed
}

func (e *FirstUseError) Error() string {
	return fmt.Sprintf("first connection to %s: nothing vouches for its key (SHA-256 %s): compare it with the gate's console (the proxy's \"gate key SHA-256\" line) and pass it as the pin, or give the CA that signed the gate's certificate; no credential was sent", e.Gate, e.Fingerprint)
}

// CheckPin returns pin in the form Fingerprint gives (64 lowercase hex
// digits), accepting upper case and ':' or ' ' between the digits; an
// error names what is wrong.
func CheckPin(pin string) (string, error) {
	p := strings.ToLower(strings.NewReplacer(":", "", " ", "").Replace(strings.TrimPrefix(strings.TrimPrefix(pin, "SHA256:"), "sha256:")))
	if b, err := hex.DecodeString(p); err != nil || len(b) != sha256.Size {
		return "", fmt.Errorf("pin %q: want the gate key's SHA-256, 64 hex digits", pin)
	}
	return p, nil
}

// GateFingerprint connects to the gate and returns the fingerprint of its
// key (verified with caFile when not empty), sending nothing else.
func GateFingerprint(ctx context.Context, gateURL, caFile string) (string, error) {
	gate, err := ParseGate(gateURL)
	if err != nil {
		return "", err
	}
	l, err := learnGate(ctx, gate, gateTrust{CAFile: caFile})
	if err != nil {
		return "", err
	}
	return l.Fingerprint, nil
}

// StoredPin is the pin the profile in dir (DefaultDir when empty) keeps
// for the gate at gateURL, or "" (none, or a profile CheckProfile
// refuses).
func StoredPin(dir, gateURL string) string {
	gate, err := ParseGate(gateURL)
	if err != nil {
		return ""
	}
	if p := storedProfile(dir, gate); p != nil {
		return p.Pin
	}
	return ""
}

// StoredGateID is the gate identity the profile in dir (DefaultDir when
// empty) is bound to for the gate at gateURL, or "" (none, or a profile
// CheckProfile refuses).
func StoredGateID(dir, gateURL string) string {
	gate, err := ParseGate(gateURL)
	if err != nil {
		return ""
	}
	return storedGateID(dir, gate)
}

func storedGateID(dir, gate string) string {
	if p := storedProfile(dir, gate); p != nil {
		return p.GateID
	}
	return ""
}

// storedProfile is the profile in dir (DefaultDir when empty) if it is
// for gate (host:port) and CheckProfile accepts it, else nil.
func storedProfile(dir, gate string) *Profile {
	if dir == "" {
		var err error
		if dir, err = DefaultDir(); err != nil {
			return nil
		}
	}
	if CheckProfile(dir) != nil {
		return nil
	}
	if p, err := loadProfile(dir, false); err == nil && p.Gate == gate {
		return p
	}
	return nil
}

// CheckProfile refuses, before a login, a profile directory (DefaultDir
// when empty) the login could not make the user's own: one of another
// user, or one others may write in; and a stored profile others may
// change, whose pin the login would enforce. A directory others may only
// read is made 0700 by the login.
func CheckProfile(dir string) error {
	if dir == "" {
		var err error
		if dir, err = DefaultDir(); err != nil {
			return err
		}
	}
	if err := checkDir(dir); err != nil {
		return err
	}
	if _, _, err := readOwn(filepath.Join(dir, ProfileFile), kindProfile, true); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// LoginResult says what Login did.
type LoginResult struct {
	Gate        string
	Fingerprint string
	FirstUse    bool // the pin was learned now (CA or TrustFirstUse)
	// GateID is the gate identity the profile is bound to (with a CA
	// file; "" without), BoundGateID whether it is new to the profile.
	GateID      string
	BoundGateID bool
	// CAFile is the CA file the profile stores, an absolute path ("":
	// none).
	CAFile   string
	User     string
	NotAfter time.Time
	// Replaced is the credential of another gate or user that was in
	// the profile directory, and what became of it (nil: none, or this
	// user's own for this gate, renewed).
	Replaced *Replaced
}

// Login makes a key, logs in, and stores key, certificate and pin. A pin
// already stored for the same gate is enforced. A profile holds one
// credential: one of another gate, or of another user, that the new one
// replaces is ended at its gate once the new one is stored (see
// Replaced).
func Login(ctx context.Context, o LoginOptions) (*LoginResult, error) {
	gate, err := ParseGate(o.Gate)
	if err != nil {
		return nil, err
	}
	dir := o.Dir
	if dir == "" {
		if dir, err = DefaultDir(); err != nil {
			return nil, err
		}
	}
	// The CA file is stored with the credential: later commands run
	// from other directories.
	if o.CAFile != "" {
		if o.CAFile, err = filepath.Abs(o.CAFile); err != nil {
			return nil, fmt.Errorf("CA file %s: %w", o.CAFile, err)
		}
	}
	// A directory the credential could not be stored in is refused
	// before the password and the one-time code go out.
	if err := CheckProfile(dir); err != nil {
		return nil, err
	}
	// What vouches for the gate: the pin and, with a CA file, the gate
	// identity stored at an earlier login, or those given now.
	var pin, gateID string
	if p := storedProfile(dir, gate); p != nil {
		pin, gateID = p.Pin, p.GateID
		// A renewal that names no CA, identity or pin keeps the
		// profile's binding (its CA file and gate identity), as ssh
		// keeps a known host: without it the renewal stored the pin
		// alone and the binding was gone without a word.
		if o.CAFile == "" && o.GateID == "" && o.Pin == "" && p.CAFile != "" && p.GateID != "" {
			o.CAFile = p.CAFile
		}
	}
	if o.GateID != "" {
		if o.CAFile == "" {
			return nil, fmt.Errorf("gate identity %s given without a CA file: only a CA vouches for the identity a certificate names; without one the gate is bound by its key (the pin)", o.GateID)
		}
		if gateID, err = CheckGateID(o.GateID); err != nil {
			return nil, err
		}
		// The CA and the identity given bind the gate: they replace
		// what was stored (a gate replaced on purpose has another key).
		pin = ""
	}
	if o.Pin != "" {
		if pin, err = CheckPin(o.Pin); err != nil {
			return nil, err
		}
	}
	if o.CAFile == "" {
		gateID = ""
	}
	if pin == "" && o.CAFile == "" && !o.TrustFirstUse {
		// Nothing vouches for the gate: learn its key, send nothing.
		l, err := learnGate(ctx, gate, gateTrust{})
		if err != nil {
			return nil, err
		}
		return nil, &FirstUseError{Gate: gate, Fingerprint: l.Fingerprint}
	}
	if pin == "" && o.CAFile != "" && gateID == "" && !o.TrustFirstUse {
		// The CA vouches for whatever it certified, not for this gate:
		// learn the identity the certificate names, send nothing.
		l, err := learnGate(ctx, gate, gateTrust{CAFile: o.CAFile})
		if err != nil {
			return nil, err
		}
		return nil, &IdentityFirstUseError{Gate: gate, CAFile: o.CAFile, GateID: l.GateID, Fingerprint: l.Fingerprint}
	}
	var learned learnedGate
	cfg, err := tlsConfig(wire.ALPNLogin, gateTrust{Pin: pin, CAFile: o.CAFile, GateID: gateID}, nil, &learned)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	c, err := dialTLS(ctx, gate, cfg)
	var kc *KeyChangedError
	if errors.As(err, &kc) && o.Pin != "" {
		kc.Given, kc.Confirmed = true, o.Confirmed
	}
	var ic *IdentityChangedError
	if errors.As(err, &ic) && o.GateID != "" {
		ic.Given, ic.Confirmed = true, o.Confirmed
	}
	if err != nil {
		return nil, err
	}
	defer c.Close()
	rsp, err := call(c, wire.Request{Op: wire.OpLogin, User: o.User, Password: o.Password, Code: o.Code, PublicKey: pub})
	if err != nil {
		return nil, err
	}
	if len(rsp.Certificate) == 0 {
		return nil, errors.New("gate answered the login without a certificate")
	}
	leaf, err := x509.ParseCertificate(rsp.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("certificate from the gate: %w", err)
	}
	if !key.PublicKey.Equal(leaf.PublicKey) {
		return nil, errors.New("gate issued a certificate for a different key")
	}
	res := &LoginResult{Gate: gate, User: rsp.User, NotAfter: leaf.NotAfter, Fingerprint: pin, GateID: learned.GateID, CAFile: o.CAFile}
	if pin == "" { // vouched for by the CA, or trusted on first use
		res.Fingerprint, res.FirstUse = learned.Fingerprint, true
	}
	res.BoundGateID = learned.GateID != "" && learned.GateID != storedGateID(dir, gate)
	prev := readPrevious(dir)
	if err := storeLogin(dir, &Profile{Gate: gate, Pin: res.Fingerprint, CAFile: o.CAFile, GateID: learned.GateID, User: rsp.User, Expiry: leaf.NotAfter}, key, rsp.Certificate,
		c.ConnectionState().PeerCertificates[0].Raw); err != nil {
		return nil, fmt.Errorf("store the credential in %s: %w (not logged in: log in again once that is mended)", dir, err)
	}
	res.Replaced = prev.end(ctx, res)
	return res, nil
}

// GateError is an error answer of the gate.
type GateError struct{ Code, Msg string }

func (e *GateError) Error() string { return "gate: " + e.Msg }

func call(c *tls.Conn, req wire.Request) (*wire.Response, error) {
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if err := wire.WriteFrame(c, req); err != nil {
		return nil, fmt.Errorf("send %s: %w", req.Op, err)
	}
	var rsp wire.Response
	if err := wire.ReadFromGate(c, &rsp); err != nil {
		return nil, fmt.Errorf("read %s answer: %w", req.Op, err)
	}
	if rsp.Code != "" {
		return nil, &GateError{Code: rsp.Code, Msg: rsp.Error}
	}
	return &rsp, nil
}

// Session is a logged-in profile.
type Session struct {
	Dir string
	// Profile is the profile as opened. A credential Follow takes is for
	// the same gate, pin, CA file, gate identity and user; NotAfter is
	// its end.
	Profile *Profile

	mu   sync.Mutex
	cert *tls.Certificate
	// certInfo is the certificate file read last (Follow).
	certInfo fs.FileInfo
	// skipped is a stored credential Follow did not take, said once.
	skipped fs.FileInfo

	// resume holds the TLS 1.3 session tickets of every connection to the
	// gate (tunnels, the notice stream, assets, logout), so that every
	// connection after the first resumes: the gate's key lives in its TPM,
	// where a signature takes 0.5 ms (swtpm) to 100 ms (a discrete TPM),
	// and engineering tools open many connections. The gate still checks
	// the certificate of a resumed connection (expiry, revocation) as it
	// does on a full handshake. A resumed connection presents the
	// certificate of the one that got the ticket: Follow starts a new
	// cache with each new credential.
	resume tls.ClientSessionCache
}

// Open loads the profile in dir (DefaultDir when empty). The directory
// and its files must be the user's own and closed to others: see
// UnprotectedError.
func Open(dir string) (*Session, error) { return open(dir, true) }

// OpenToRevoke is Open without the owner and mode checks, for a logout:
// a credential others could read is the one to end at the gate.
func OpenToRevoke(dir string) (*Session, error) { return open(dir, false) }

func open(dir string, check bool) (*Session, error) {
	var err error
	if dir == "" {
		if dir, err = DefaultDir(); err != nil {
			return nil, err
		}
	}
	c, err := readCredential(dir, check)
	if err != nil {
		return nil, err
	}
	return &Session{Dir: dir, Profile: c.profile, cert: c.cert, certInfo: c.certInfo, resume: tls.NewLRUClientSessionCache(8)}, nil
}

// NotAfter is when the certificate in use expires.
func (s *Session) NotAfter() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.notAfterLocked()
}

func (s *Session) notAfterLocked() time.Time {
	if s.cert.Leaf != nil {
		return s.cert.Leaf.NotAfter
	}
	if leaf, err := x509.ParseCertificate(s.cert.Certificate[0]); err == nil {
		return leaf.NotAfter
	}
	return s.Profile.Expiry
}

func (s *Session) dial(ctx context.Context, alpn string) (*tls.Conn, error) {
	s.mu.Lock()
	cert, resume := s.cert, s.resume
	s.mu.Unlock()
	cfg, err := tlsConfig(alpn, gateTrust{Pin: s.Profile.Pin, CAFile: s.Profile.CAFile, GateID: s.Profile.GateID}, cert, nil)
	if err != nil {
		return nil, err
	}
	cfg.ClientSessionCache = resume
	return dialTLS(ctx, s.Profile.Gate, cfg)
}

// Assets asks the gate what the user may reach now.
func (s *Session) Assets(ctx context.Context) (*wire.Response, error) {
	c, err := s.dial(ctx, wire.ALPNLogin)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return call(c, wire.Request{Op: wire.OpAssets})
}

// LogoutError is a logout that did not do all it should.
type LogoutError struct {
	// Gate is why the gate was not told (nil: it was).
	Gate error
	// Remove is why the local files are not all gone (nil: they are).
	Remove error
}

func (e *LogoutError) Error() string { return errors.Join(e.Gate, e.Remove).Error() }

func (e *LogoutError) Unwrap() []error {
	var errs []error
	for _, err := range []error{e.Gate, e.Remove} {
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// Logout asks the gate to invalidate every certificate of the user, then
// deletes the local files, also when the gate cannot be reached. Unless
// both are done it returns a *LogoutError saying which was not.
func (s *Session) Logout(ctx context.Context) error {
	gerr := s.revoke(ctx)
	rerr := RemoveProfile(s.Dir)
	if gerr == nil && rerr == nil {
		return nil
	}
	return &LogoutError{Gate: gerr, Remove: rerr}
}

// revoke asks the gate to invalidate every certificate of the user.
func (s *Session) revoke(ctx context.Context) error {
	c, err := s.dial(ctx, wire.ALPNLogin)
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = call(c, wire.Request{Op: wire.OpLogout})
	return err
}

// DeniedError is a refused tunnel.
type DeniedError struct{ Reply wire.Reply }

func (e *DeniedError) Error() string {
	if e.Reply.Rule != "" {
		return fmt.Sprintf("gate refused: %s (rule %s)", e.Reply.Reason, e.Reply.Rule)
	}
	return "gate refused: " + e.Reply.Reason
}

// Tunnel opens one stream to asset/protocol. On accept the returned
// connection carries the application's bytes.
func (s *Session) Tunnel(ctx context.Context, asset, protocol string) (*tls.Conn, *wire.Reply, error) {
	hdr, err := wire.Header{Asset: asset, Protocol: protocol}.AppendBinary(nil)
	if err != nil {
		return nil, nil, err
	}
	c, err := s.dial(ctx, wire.ALPNTunnel)
	if err != nil {
		return nil, nil, err
	}
	// ctx ending (Ctrl-C at otgate connect) ends the wait for the gate's
	// answer too, not only the dial.
	stop := closeWhenDone(ctx, c)
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write(hdr); err != nil {
		stop()
		c.Close()
		return nil, nil, fmt.Errorf("send tunnel header: %w", ctxErr(ctx, err))
	}
	var r wire.Reply
	if err := wire.ReadFromGate(c, &r); err != nil {
		stop()
		c.Close()
		return nil, nil, fmt.Errorf("read the gate's answer: %w", ctxErr(ctx, err))
	}
	if !stop() {
		c.Close()
		return nil, nil, fmt.Errorf("read the gate's answer: %w", ctx.Err())
	}
	if !r.Accept {
		c.Close()
		return nil, &r, &DeniedError{Reply: r}
	}
	c.SetDeadline(time.Time{})
	return c, &r, nil
}

// closeWhenDone closes c when ctx ends, until stop is called; stop
// returns false when ctx ended first (c is closed, or being closed).
func closeWhenDone(ctx context.Context, c *tls.Conn) (stop func() bool) {
	return context.AfterFunc(ctx, func() { c.Close() })
}

// ctxErr is ctx's error when ctx has ended (the connection was closed for
// it: its own error would only say "use of closed network connection"),
// else err.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}
