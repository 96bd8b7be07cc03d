package timesync

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/beevik/ntp"
	"github.com/beevik/nts"

	"github.com/otgate/otgate/site"
)

// NTS (RFC 8915) with github.com/beevik/nts. A server's state lives in an
// ntsPeer for as long as the policy names the same servers and CA: the
// session (keys and cookies from the key exchange, NTS-KE over TLS 1.3)
// is kept across polls, so a key exchange happens once, not per poll.
//
// What the library leaves to its caller, done here:
//   - Trust: the TLS certificate of the key exchange is verified against
//     the site file's CA only (the gate has no system bundle), with the
//     service's clock, and before the first sync of the boot without the
//     certificates' validity times (verifyChain), but not with a chain
//     that expired before the clock floor (certBelowFloor, floor.go). A session lives by
//     its cookies, not its certificate: once the clock is set, a chain
//     no longer valid at it means a new key exchange (queryPeer).
//   - Authentication of every reply: the library checks the authenticator
//     (AEAD) of a reply only if the reply carries one, and a reply without
//     extension fields passes as it is: a plain NTP reply, forged by anyone
//     on the path, would be taken. ntsConn, the query's socket, lets
//     through only replies that carry our unique identifier and exactly
//     one authenticator after it, well formed (the library also panics
//     on some malformed fields); the library then verifies the
//     authenticator over the header and the identifier.
//   - NTS NAKs: the library takes any packet with the NAK's kiss code as
//     one, unauthenticated as it is; ntsConn takes only one with the
//     query's unique identifier, and not before the deadline passes
//     without an authenticated reply (RFC 8915 5.7).
//   - Cookies running out (replies lost): the library runs a new key
//     exchange inside the query; if that fails, or the server refuses our
//     cookie (NTS NAK: its keys changed), the session is dropped and the
//     next poll starts with a new key exchange.
//   - Back-off: a failed key exchange is not repeated before RetryMin,
//     doubling up to RetryMax while it keeps failing, whatever the poll
//     interval.
//   - Deadlines: the library sets none on the key exchange after the TLS
//     handshake; keDial sets one (Timeout) for the whole exchange.

// ntsPeer is one NTS-KE server's state.
type ntsPeer struct {
	server  string // host:port of the key exchange
	host    string
	roots   *x509.CertPool
	anchors []*x509.Certificate

	session *nts.Session
	// dialErr: why the last TLS connection of a key exchange failed
	// (nil: it did not); dialed: a key exchange was started during the
	// current query (the library's re-key when cookies run out).
	dialErr error
	dialed  bool
	// backoff and nextKE (monotonic) space key exchanges that fail.
	backoff time.Duration
	nextKE  time.Time
	lastErr string
	failAt  time.Time
	// notBefore, notAfter: when the certificate chain of the session's
	// key exchange is valid; the time a reply vouches for must be in it.
	notBefore, notAfter time.Time
}

// ntsPeers returns the peers of the policy's nts section, keeping the
// sessions of the servers it still names with the same CA.
func (s *Service) ntsPeers(n *site.NTS) ([]*ntsPeer, error) {
	roots, anchors, err := n.CAPool()
	if err != nil {
		return nil, fmt.Errorf("the site policy's uplink.nts is unusable: %w", err)
	}
	h := sha256.New()
	for _, der := range n.CA {
		h.Write(der)
	}
	key := fmt.Sprintf("%x", h.Sum(nil))
	if key != s.ntsCA {
		s.ntsCA, s.peers = key, nil
	}
	old := s.peers
	s.peers = map[string]*ntsPeer{}
	out := make([]*ntsPeer, 0, len(n.Servers))
	for _, srv := range n.Servers {
		p := old[srv]
		if p == nil {
			host, _, err := net.SplitHostPort(srv)
			if err != nil {
				return nil, fmt.Errorf("the site policy's uplink.nts names a bad server %q: %w", srv, err)
			}
			p = &ntsPeer{server: srv, host: host, roots: roots, anchors: anchors}
		}
		s.peers[srv] = p
		out = append(out, p)
	}
	return out, nil
}

// queryNTS asks the peers at once.
func (s *Service) queryNTS(ctx context.Context, peers []*ntsPeer) []Sample {
	out := make([]Sample, len(peers))
	done := make(chan struct{})
	for i, p := range peers {
		go func() {
			defer func() { done <- struct{}{} }()
			out[i] = s.queryPeer(ctx, p)
		}()
	}
	for range peers {
		<-done
	}
	return out
}

func (s *Service) queryPeer(ctx context.Context, p *ntsPeer) (smp Sample) {
	smp = Sample{Server: p.server, NTS: true}
	defer func() {
		// A library bug on a hostile reply must cost this reply, not the
		// service: the session is dropped and the next poll starts over.
		if r := recover(); r != nil {
			p.session = nil
			smp.Err = fmt.Errorf("nts library failure on a reply: %v (new key exchange at the next poll)", r)
		}
	}()
	if err := ctx.Err(); err != nil {
		smp.Err = err
		return smp
	}
	if p.session != nil && s.synced {
		// The session outlives the key exchange that verified its
		// certificate: by cookies it can serve for months, past the
		// chain's expiry (a server that renewed its certificate would
		// be asked under the old one, its times refused below, for
		// ever), and one made before the first sync had its times
		// never checked. Once the clock is set, a chain no longer valid
		// by it means a new key exchange, verified at that clock.
		if now := s.Clock.Now(); now.Before(p.notBefore) || now.After(p.notAfter) {
			s.Logf("timesync: nts %s: the certificate chain of the session's key exchange is not valid at %s (%s to %s): new key exchange",
				p.server, stamp(now), stamp(p.notBefore), stamp(p.notAfter))
			p.session = nil
		}
	}
	if p.session == nil {
		if now := time.Now(); now.Before(p.nextKE) {
			smp.Err = fmt.Errorf("%s (%s ago; next key exchange in %s)", p.lastErr, now.Sub(p.failAt).Round(time.Second), p.nextKE.Sub(now).Round(time.Second))
			return smp
		}
		sess, err := nts.NewSessionWithOptions(p.server, &nts.SessionOptions{
			TLSConfig: s.tlsConfig(p), Timeout: s.Timeout, Dialer: s.keDial(p),
		})
		if err != nil {
			smp.Err = s.keFailed(p, err, "")
			return smp
		}
		p.session, p.backoff = sess, 0
		s.Logf("timesync: nts %s: key exchange done (certificate verified against the site CA; NTP server %s)", p.server, sess.Address())
	}
	p.dialed = false
	opt := &ntp.QueryOptions{Timeout: s.Timeout, GetSystemTime: s.Clock.Now, Dialer: s.ntsDial}
	r, err := p.session.QueryWithOptions(opt)
	switch {
	case err != nil && p.dialed:
		// The library ran out of cookies and its new key exchange, or
		// the query after it, failed: start over.
		smp.Err = s.keFailed(p, err, "cookies used up: ")
		return smp
	case errors.Is(err, nts.ErrAuthFailedOnClient):
		smp.Err = errors.New("auth failed on a reply: its authenticator does not verify (forged or damaged on the way); not used")
		return smp
	case errors.Is(err, errNAK), errors.Is(err, nts.ErrAuthFailedOnServer):
		p.session = nil
		smp.Err = errors.New("the server refused our cookie (NTS NAK: its keys changed?); new key exchange at the next poll")
		return smp
	case err != nil:
		smp.Err = err
		return smp
	}
	if p.dialed {
		s.Logf("timesync: nts %s: cookies used up: new key exchange done", p.server)
	}
	fill(&smp, r)
	if t := r.Time; smp.Err == nil && (t.Before(p.notBefore) || t.After(p.notAfter)) {
		// The next poll runs a new key exchange: the server may have a
		// certificate for that time by now.
		p.session = nil
		smp.Err = fmt.Errorf("the server's time %s is outside its certificate chain's validity (%s to %s): not used (new key exchange at the next poll)",
			stamp(t), stamp(p.notBefore), stamp(p.notAfter))
	}
	return smp
}

// keFailed records a failed key exchange: the session is dropped and the
// next attempt waits (RetryMin, doubling up to RetryMax).
func (s *Service) keFailed(p *ntsPeer, err error, prefix string) error {
	p.session = nil
	switch {
	case p.backoff == 0:
		p.backoff = s.RetryMin
	default:
		p.backoff = min(2*p.backoff, s.RetryMax)
	}
	p.failAt = time.Now()
	p.nextKE = p.failAt.Add(p.backoff)
	why := "key exchange refused: " + err.Error()
	if prefix != "" {
		why = "the new key exchange, or the query after it, failed: " + err.Error()
	}
	if p.dialErr != nil {
		why = p.dialErr.Error()
	}
	p.lastErr = prefix + why
	return fmt.Errorf("%s (next key exchange in %s)", p.lastErr, p.backoff)
}

// tlsConfig is the key exchange's TLS configuration for p: TLS 1.3 (the
// library insists too) and the certificate verified by verifyChain, not
// by crypto/tls: that would use the host's clock and could not skip the
// validity times before the first sync.
func (s *Service) tlsConfig(p *ntsPeer) *tls.Config {
	c := &tls.Config{
		MinVersion: tls.VersionTLS13,
		// Not insecure: VerifyConnection runs on every handshake and
		// verifies the chain to the site CA and the server's name.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			nb, na, err := verifyChain(p.host, p.roots, p.anchors, cs.PeerCertificates, s.Clock.Now(), s.synced)
			p.notBefore, p.notAfter = nb, na
			if err == nil {
				err = s.certBelowFloor(na)
			}
			return err
		},
	}
	if net.ParseIP(p.host) == nil {
		c.ServerName = p.host // a DNS name: sent as SNI
	}
	return c
}

// certError is a certificate the gate does not trust.
type certError struct{ err error }

func (e *certError) Error() string { return "certificate not trusted: " + e.err.Error() }
func (e *certError) Unwrap() error { return e.err }

// verifyChain verifies the server's certificate chain (certs, leaf
// first) against the site's CA (roots) and the name the site file gives
// the server (host: a DNS name, or an address that must be in the
// certificate's IP subjectAltNames), at now.
//
// Before the first sync of the boot (checkTimes false) the gate's clock
// may be anything (a dead RTC battery: 2020, and every certificate "not
// yet valid"), and it is NTS that is to set it. Then, as chrony does
// with nocerttimecheck, the validity times are not compared with the
// clock: the chain must still lead to the site CA, name the server, and
// be valid at one common instant (some certificate's notBefore) - all
// but the clock's reading is checked - and the time the server then
// sends must lie in the chain's validity (queryPeer): a server whose
// certificate expired cannot vouch for a time after that. Once the
// clock was synchronised this boot, the times are checked against it
// like everything else.
//
// It returns when the verified chain is valid (the latest notBefore, the
// earliest notAfter of its certificates).
func verifyChain(host string, roots *x509.CertPool, anchors, certs []*x509.Certificate, now time.Time, checkTimes bool) (notBefore, notAfter time.Time, err error) {
	if len(certs) == 0 {
		return notBefore, notAfter, &certError{errors.New("the server sent no certificate")}
	}
	window := func(chains [][]*x509.Certificate) (nb, na time.Time) {
		for _, c := range chains[0] {
			if nb.IsZero() || c.NotBefore.After(nb) {
				nb = c.NotBefore
			}
			if na.IsZero() || c.NotAfter.Before(na) {
				na = c.NotAfter
			}
		}
		return nb, na
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	opts := x509.VerifyOptions{
		Roots: roots, Intermediates: inter, DNSName: host, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	chains, err := certs[0].Verify(opts)
	if err == nil {
		nb, na := window(chains)
		return nb, na, nil
	}
	if checkTimes {
		return notBefore, notAfter, &certError{err}
	}
	// The latest notBefore of a chain lies in every certificate's
	// validity if their periods overlap at all: trying each notBefore
	// of the certificates that can be in a chain finds such an instant.
	// If none does, the reason is the one at the leaf's notBefore (an
	// unknown CA, a wrong name), not the clock's.
	var atLeaf error
	for i, c := range append(append([]*x509.Certificate{}, certs...), anchors...) {
		opts.CurrentTime = c.NotBefore
		chains, e := certs[0].Verify(opts)
		if e == nil {
			nb, na := window(chains)
			return nb, na, nil
		}
		if i == 0 {
			atLeaf = e
		}
	}
	var inv x509.CertificateInvalidError
	if errors.As(atLeaf, &inv) && inv.Reason == x509.Expired {
		return notBefore, notAfter, &certError{fmt.Errorf("%w (no instant at which the whole chain is valid)", err)}
	}
	return notBefore, notAfter, &certError{atLeaf}
}

// keDial opens the TLS connection of p's key exchanges (the library's
// Dialer): through DialKE, with one deadline for the whole exchange,
// recording why it failed.
func (s *Service) keDial(p *ntsPeer) func(network, addr string, cfg *tls.Config) (*tls.Conn, error) {
	return func(network, addr string, cfg *tls.Config) (*tls.Conn, error) {
		p.dialed, p.dialErr = true, nil
		dial := s.DialKE
		if dial == nil {
			dial = (&net.Dialer{Timeout: s.Timeout}).Dial
		}
		c, err := dial(network, addr)
		if err != nil {
			p.dialErr = fmt.Errorf("key exchange: no connection: %w", err)
			return nil, p.dialErr
		}
		_ = c.SetDeadline(time.Now().Add(s.Timeout))
		tc := tls.Client(c, cfg)
		if err := tc.Handshake(); err != nil {
			c.Close()
			var ce *certError
			if errors.As(err, &ce) {
				p.dialErr = ce
			} else {
				p.dialErr = fmt.Errorf("key exchange: TLS handshake: %w", err)
			}
			return nil, p.dialErr
		}
		return tc, nil
	}
}

// ntsDial opens an NTS query's socket (through Dial) as an ntsConn.
func (s *Service) ntsDial(laddr, raddr string) (net.Conn, error) {
	dial := s.Dial
	if dial == nil {
		dial = func(_, raddr string) (net.Conn, error) {
			ra, err := net.ResolveUDPAddr("udp", raddr)
			if err != nil {
				return nil, err
			}
			return net.DialUDP("udp", nil, ra)
		}
	}
	c, err := dial(laddr, raddr)
	if err != nil {
		return nil, err
	}
	return &ntsConn{Conn: c}, nil
}

// NTS extension field types (RFC 8915 section 5.7).
const (
	extUniqueID = 0x0104
	extAEAD     = 0x0404
	ntpHeader   = 48
)

// Errors of an NTS reply that ntsConn does not pass on.
var (
	errNAK             = errors.New("NTS NAK (the server refused our cookie)")
	errUnauthenticated = errors.New("no NTS-authenticated reply")
)

// ntsConn is an NTS query's socket. It remembers the unique identifier
// of the query written and passes on only a reply that answers it and
// carries an authenticator (checkReply); any other datagram (a forged
// plain NTP reply, one stripped of its NTS fields, a malformed one) is
// ignored, as a reply to someone else would be, and the read goes on
// until the query's deadline: someone on the path cannot make the query
// fail by answering first. If the deadline passes, the error says what
// was ignored.
//
// An NTS NAK (the server refuses our cookie) is unauthenticated by its
// nature: it counts only if it carries the query's unique identifier,
// and even then the read goes on, as RFC 8915 (5.7) has a client wait
// for an authenticated reply: a NAK forged by someone who sees the query
// must not cost the genuine reply behind it, nor the session. Only if
// none comes before the deadline is the NAK the query's answer (errNAK:
// the session is dropped, a new key exchange at the next poll).
type ntsConn struct {
	net.Conn
	id      []byte
	ignored int
	why     error
	nak     bool
}

func (c *ntsConn) Write(b []byte) (int, error) {
	c.id, c.ignored, c.why, c.nak = nil, 0, nil, false
	if f, ok := fields(b); ok {
		for _, x := range f {
			if x.typ == extUniqueID {
				c.id = bytes.Clone(x.body)
				break
			}
		}
	}
	return c.Conn.Write(b)
}

func (c *ntsConn) Read(b []byte) (int, error) {
	for {
		n, err := c.Conn.Read(b)
		if err != nil {
			switch {
			case c.nak:
				err = fmt.Errorf("%w, and no authenticated reply came before the deadline (%v)", errNAK, err)
			case c.ignored > 0:
				err = fmt.Errorf("%w: ignored %d reply(s): %w (%v)", errUnauthenticated, c.ignored, c.why, err)
			}
			return n, err
		}
		why := checkReply(b[:n], c.id)
		switch {
		case why == nil:
			return n, nil
		case errors.Is(why, errNAK):
			c.nak = true
			continue
		}
		c.ignored++
		c.why = why
	}
}

type field struct {
	typ  uint16
	body []byte
}

// fields splits the extension fields after an NTP header: each at least
// 4 bytes, a multiple of 4, within the packet, nothing left over.
func fields(pkt []byte) ([]field, bool) {
	if len(pkt) < ntpHeader {
		return nil, false
	}
	var out []field
	for cur := pkt[ntpHeader:]; len(cur) > 0; {
		if len(cur) < 4 {
			return nil, false
		}
		l := int(binary.BigEndian.Uint16(cur[2:4]))
		if l < 4 || l%4 != 0 || l > len(cur) {
			return nil, false
		}
		out = append(out, field{binary.BigEndian.Uint16(cur[0:2]), cur[4:l]})
		cur = cur[l:]
	}
	return out, true
}

// checkReply says why an NTS reply is not to be passed on: it must be
// well formed, carry the query's unique identifier, and after it exactly
// one authenticator with a nonce and at least a 16-byte tag (the library
// then verifies it over everything before it: header and identifier).
//
// An NTS NAK is errNAK only with the query's unique identifier (RFC 8915
// 5.7); one without it is not an answer to our query.
func checkReply(pkt, id []byte) error {
	f, ok := fields(pkt)
	if len(pkt) >= ntpHeader && pkt[1] == 0 && string(pkt[12:16]) == "NTSN" {
		for _, x := range f {
			if ok && len(id) > 0 && x.typ == extUniqueID && bytes.Equal(x.body, id) {
				return errNAK
			}
		}
		return errors.New("an NTS NAK without our query's unique identifier (forged?)")
	}
	switch {
	case len(id) == 0:
		return errors.New("the query carried no unique identifier")
	case !ok:
		return errors.New("malformed NTS extension fields")
	}
	seenID, aead := false, 0
	for _, x := range f {
		switch x.typ {
		case extUniqueID:
			if !bytes.Equal(x.body, id) {
				return errors.New("the unique identifier is not our query's")
			}
			if aead == 0 {
				seenID = true
			}
		case extAEAD:
			aead++
			if len(x.body) < 4 {
				return errors.New("malformed authenticator")
			}
			nl, cl := int(binary.BigEndian.Uint16(x.body[0:2])), int(binary.BigEndian.Uint16(x.body[2:4]))
			if nl < 1 || cl < 16 || 4+(nl+3)&^3+(cl+3)&^3 > len(x.body) {
				return errors.New("malformed authenticator")
			}
		}
	}
	switch {
	case aead == 0 && len(f) == 0:
		return errors.New("a plain NTP reply without NTS fields (NTS stripped on the way?)")
	case aead == 0:
		return errors.New("no authenticator")
	case aead > 1:
		return errors.New("more than one authenticator")
	case !seenID:
		return errors.New("no unique identifier under the authenticator")
	}
	return nil
}
