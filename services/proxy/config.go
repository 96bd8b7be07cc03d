package proxy

import (
	"context"
	"crypto"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/netip"
	"time"

	"github.com/otgate/otgate/audit"
	"github.com/otgate/otgate/inspect/modbus"
	"github.com/otgate/otgate/services/proxy/auth"
	"github.com/otgate/otgate/site"
)

// Users is the user store (*auth.Store).
type Users interface {
	Authenticate(user string, password []byte, code string, source netip.Addr) (*auth.Login, error)
	Unlock(name string) error
	Revoke(name, why string) (uint64, error)
	RevokeCertificate(name string, serial *big.Int, notAfter time.Time, why string) error
}

// Credential is what a verified client certificate says.
type Credential struct {
	User       string
	Roles      []string
	Generation uint64
	Serial     *big.Int
	NotAfter   time.Time
}

// SerialString is the serial in lower-case hex, as the audit log has it.
func (c *Credential) SerialString() string {
	if c.Serial == nil {
		return ""
	}
	return c.Serial.Text(16)
}

// CertAuthority issues and verifies user certificates (auth/userca).
type CertAuthority interface {
	// Issue certifies pub for the login, valid at most until notAfter;
	// it returns the chain, leaf first.
	Issue(login *auth.Login, pub crypto.PublicKey, notAfter time.Time) ([][]byte, error)
	// Verify checks a presented chain (leaf first): issued by this CA,
	// not expired, not revoked, generation current, user enabled.
	Verify(chain [][]byte) (*Credential, error)
}

// DecisionRequest is what the policy decides on.
type DecisionRequest struct {
	User     string
	Roles    []string
	Asset    string
	Protocol string
	Source   netip.Addr
	Time     time.Time
}

// Decision is the policy's answer. Every decision names the rule that made
// it (empty only when no rule matched) and, when allowed, until when it
// holds (zero: no end known).
type Decision struct {
	Allow  bool
	Rule   string
	Reason string
	Until  time.Time
	// SessionBound: Until is the grant's longest session from the
	// decision's time, not the end of its window (the grant still allows
	// at Until; a login credential is not carried past it all the same).
	SessionBound bool
	// MaxSession is the grant's longest session (0: none).
	MaxSession time.Duration
	// Modbus is the grant's Modbus rules; required for protocol modbus.
	Modbus *modbus.Policy
	// Monitor: the asset's zone is in monitor mode (denied Modbus
	// requests are forwarded and recorded as would-deny).
	Monitor bool
}

// Decider is a compiled policy (policy.Policy).
type Decider interface {
	Decide(DecisionRequest) Decision
}

// Policy is one applied site: the asset inventory and its decider.
type Policy struct {
	Site    *site.Site
	Decider Decider
	// Source names where it came from (file name), for logs.
	Source string
}

// asset returns the named asset.
func (p *Policy) asset(name string) (site.Asset, bool) {
	for _, a := range p.Site.Assets {
		if a.Name == name {
			return a, true
		}
	}
	return site.Asset{}, false
}

// PolicyLoader loads, validates and compiles the site file; an error must
// name file, line and field. It is called at reload (SIGHUP, admin).
type PolicyLoader func() (*Policy, error)

// Config configures a Server. Fields marked required must be set.
type Config struct {
	// Certificate is the listener's certificate (identity TLSCertificate()),
	// required.
	Certificate *tls.Certificate
	Users       Users // required
	// UserAdmin administers the user store through the admin socket
	// (the same *auth.Store as Users); nil: user operations are refused.
	UserAdmin UserAdmin
	CA        CertAuthority // required
	Log       *audit.Writer // required: no unlogged session
	// LoadPolicy loads the policy at start and at every reload; required.
	LoadPolicy PolicyLoader
	// DialContext opens the connection to an asset (default: TCP with
	// Mark). ctx ends when the session's reason to exist does (its client
	// goes away, a revocation or a reload ends it, its window ends, the
	// gate shuts down) or at DialTimeout: the dial must give up then.
	DialContext func(ctx context.Context, addr netip.AddrPort) (io.ReadWriteCloser, error)
	// Dial is DialContext without the context (used when DialContext is
	// nil): a session that ends during the dial is refused at once, but
	// the dial itself runs on until it returns (and its connection, if
	// any, is closed then).
	Dial func(addr netip.AddrPort) (io.ReadWriteCloser, error)
	// Mark is set as SO_MARK on sockets to assets (0: none); the segment
	// ruleset lets only the proxy's mark/uid reach assets.
	Mark int
	// DialTimeout bounds connecting to an asset (5 s).
	DialTimeout time.Duration
	// IdleTimeout ends a session with no bytes either way (30 min).
	IdleTimeout time.Duration
	// MaxCertValidity bounds a client certificate (8 h); it never outlasts
	// the user's current time window either.
	MaxCertValidity time.Duration
	// MaxSessions and MaxSessionsPerUser limit live sessions (1024, 64).
	MaxSessions, MaxSessionsPerUser int
	// HandshakeTimeout bounds the TLS handshake and the header (10 s).
	HandshakeTimeout time.Duration
	// HandshakeSigns bounds the handshakes being signed with the device
	// key at once (2), HandshakeSignsPerSource those of one source
	// address (2); the others wait their turn, within HandshakeTimeout
	// (see signGate).
	HandshakeSigns, HandshakeSignsPerSource int
	// MaxPendingHandshakes bounds the connections whose TLS handshake is
	// under way (512), MaxPendingHandshakesPerSource those of one source
	// address (128); one more is closed unanswered (pendingHandshakes).
	MaxPendingHandshakes, MaxPendingHandshakesPerSource int
	// NoticeWarnBefore is how long before a session's deadline the gate
	// warns on the user's notice streams (1 min, the client's WarnBefore).
	NoticeWarnBefore time.Duration
	// MaxNoticeStreamsPerUser bounds a user's open notice streams (16);
	// one more closes the user's oldest, saying so.
	MaxNoticeStreamsPerUser int
	// NoticeQueue is each notice stream's queue (64 notices); a notice
	// that finds it full is dropped and counted, never waited for.
	NoticeQueue int
	// RawPrefix is how many bytes of each relayed chunk of a raw stream
	// are kept in its payload record (64; -1: none).
	RawPrefix int
	// Logf receives the service's log lines (nil: discard).
	Logf func(format string, args ...any)
	// Now is the clock (time.Now).
	Now func() time.Time
}

func (c *Config) defaults() error {
	var missing []string
	if c.Certificate == nil {
		missing = append(missing, "Certificate")
	}
	if c.Users == nil {
		missing = append(missing, "Users")
	}
	if c.CA == nil {
		missing = append(missing, "CA")
	}
	if c.Log == nil {
		missing = append(missing, "Log")
	}
	if c.LoadPolicy == nil {
		missing = append(missing, "LoadPolicy")
	}
	if len(missing) > 0 {
		return fmt.Errorf("proxy: config: missing %v", missing)
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = 5 * time.Second
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = 30 * time.Minute
	}
	if c.MaxCertValidity == 0 {
		c.MaxCertValidity = 8 * time.Hour
	}
	if c.MaxSessions == 0 {
		c.MaxSessions = 1024
	}
	if c.MaxSessionsPerUser == 0 {
		c.MaxSessionsPerUser = 64
	}
	if c.HandshakeTimeout == 0 {
		c.HandshakeTimeout = 10 * time.Second
	}
	if c.HandshakeSigns == 0 {
		c.HandshakeSigns = 2
	}
	if c.HandshakeSignsPerSource == 0 {
		c.HandshakeSignsPerSource = 2
	}
	if c.MaxPendingHandshakes == 0 {
		c.MaxPendingHandshakes = 512
	}
	if c.MaxPendingHandshakesPerSource == 0 {
		c.MaxPendingHandshakesPerSource = 128
	}
	if c.RawPrefix == 0 {
		c.RawPrefix = 64
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.MaxPendingHandshakes < 1 || c.MaxPendingHandshakesPerSource < 1 {
		return errors.New("proxy: config: MaxPendingHandshakes and MaxPendingHandshakesPerSource must be at least 1")
	}
	if c.HandshakeSigns < 1 || c.HandshakeSignsPerSource < 1 {
		return errors.New("proxy: config: HandshakeSigns and HandshakeSignsPerSource must be at least 1")
	}
	if c.MaxSessions < 1 || c.MaxSessionsPerUser < 1 {
		return errors.New("proxy: config: MaxSessions and MaxSessionsPerUser must be at least 1")
	}
	switch {
	case c.DialContext != nil:
	case c.Dial != nil:
		c.DialContext = withoutContext(c.Dial)
	default:
		c.DialContext = tcpDialer(c.Mark, c.DialTimeout)
	}
	c.noticeDefaults()
	return nil
}
