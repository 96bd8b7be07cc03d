package timesync

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/otgate/otgate/site"
)

// The NTS tests run chronyd as an NTS server (Debian's chrony is built
// with +NTS) in the lab, with a CA and server certificates made here;
// the service reads the servers and the CA from an applied site policy,
// as on the gate.

// testCA is a CA that signs server certificates.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  string
}

func newTestCA(t *testing.T, cn string, nb, na time.Time) *testCA {
	t.Helper()
	der, key := newCert(t, &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: nb, NotAfter: na, BasicConstraintsValid: true, IsCA: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}, nil)
	c, _ := x509.ParseCertificate(der)
	return &testCA{cert: c, key: key, pem: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))}
}

// newCert makes a new key and a certificate from tmpl for it, signed by
// ca (nil: self-signed), and returns the certificate's DER and the key.
func newCert(t *testing.T, tmpl *x509.Certificate, ca *testCA) ([]byte, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	parent, signer := tmpl, key
	if ca != nil {
		parent, signer = ca.cert, ca.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	return der, key
}

// server writes a key and a certificate for address ip, signed by ca
// and valid from nb to na, to dir, and returns their paths.
func (ca *testCA) server(t *testing.T, dir, ip string, nb, na time.Time) (certFile, keyFile string) {
	t.Helper()
	der, key := newCert(t, &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: ip},
		NotBefore: nb, NotAfter: na, IPAddresses: []net.IP{net.ParseIP(ip)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, ca)
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// ntsChronyd starts a synchronised chronyd serving NTP and NTS-KE (port
// 4460) on addr, with a certificate for addr signed by ca, valid from nb
// to na.
func (l *lab) ntsChronyd(t *testing.T, addr string, ca *testCA, nb, na time.Time) (stop func()) {
	t.Helper()
	dir := filepath.Join(l.dir, "nts-"+addr)
	cert, key := ca.server(t, dir, addr, nb, na)
	l.addr(t, addr)
	return l.ntsChronydIn(t, addr, "chrony-"+addr, cert, key, dir)
}

// renewNTSChronyd starts again, once the one ntsChronyd started on addr
// has stopped, a chronyd with a new certificate for addr signed by ca,
// valid from nb to na, and the server keys of the first (its dumpdir):
// the cookies a session holds still work.
func (l *lab) renewNTSChronyd(t *testing.T, addr string, ca *testCA, nb, na time.Time) (stop func()) {
	t.Helper()
	dir := filepath.Join(l.dir, "nts-"+addr)
	cert, key := ca.server(t, dir, addr, nb, na)
	return l.ntsChronydIn(t, addr, "chrony-"+addr+"-renewed", cert, key, dir)
}

// ntsChronydIn starts a synchronised chronyd serving NTP and NTS-KE (port
// 4460) on an address the lab has already, as chronydIn does, with the
// certificate and key files given and its server keys dumped in dumpdir
// (a restart with the same dumpdir keeps them: the cookies a session
// holds still work).
func (l *lab) ntsChronydIn(t *testing.T, addr, name, cert, key, dumpdir string) (stop func()) {
	t.Helper()
	return l.chronydIn(t, addr, name, "local stratum 3", "ntsserverkey "+key, "ntsservercert "+cert, "ntsport 4460",
		"ntsdumpdir "+dumpdir, "ntsprocesses 0")
}

// dialTCP opens a key exchange's TCP connection inside the lab.
func (l *lab) dialTCP(network, addr string) (net.Conn, error) {
	return l.inNS(func() (net.Conn, error) { return net.DialTimeout(network, addr, 2*time.Second) })
}

// ntsSite is an uplink section naming the NTS servers with ca's
// certificate as the trust anchor.
func ntsSite(ca *testCA, servers ...string) string {
	var b strings.Builder
	b.WriteString("uplink:\n  mode: dhcp\n  nts:\n    servers: [" + strings.Join(servers, ", ") + "]\n    ca: |\n")
	for _, l := range strings.Split(strings.TrimRight(ca.pem, "\n"), "\n") {
		b.WriteString("      " + l + "\n")
	}
	return b.String()
}

// ntsService is a service reading the applied policy in dir, talking
// into the lab, counting key exchanges (TCP connections) and lease
// look-ups.
type ntsService struct {
	*Service
	kes, leases atomic.Int32
}

func newNTSService(t *testing.T, l *lab, dir string, c *testClock, lg *logs, marker string) *ntsService {
	s := &ntsService{}
	s.Service = &Service{
		PolicyPath: filepath.Join(dir, site.AppliedFile), Clock: c, Dial: l.dial, Marker: marker,
		DialKE: func(network, addr string) (net.Conn, error) {
			s.kes.Add(1)
			return l.dialTCP(network, addr)
		},
		LeaseNTP: func(context.Context) ([]string, error) {
			s.leases.Add(1)
			return []string{"192.0.2.3"}, nil
		},
		RTC:     filepath.Join(t.TempDir(), "no-rtc0"),
		Timeout: time.Second, Logf: lg.logf, Status: lg.note,
	}
	return s
}

// ntsTest is the setup of most NTS tests: a lab with chronyd serving
// NTS on 192.0.2.2 with a certificate the site CA signed, the applied
// policy naming that server alone with the site CA as the trust anchor,
// the clock an hour behind, and the service (no marker).
type ntsTest struct {
	l    *lab
	ca   *testCA
	stop func() // stops 192.0.2.2's chronyd
	c    *testClock
	lg   *logs
	svc  *ntsService
}

// newNTSTest sets up an ntsTest: the site CA valid from caNB to caNA,
// the server's certificate from nb to na.
func newNTSTest(t *testing.T, caNB, caNA, nb, na time.Time) *ntsTest {
	t.Helper()
	nt := &ntsTest{l: newLab(t), c: &testClock{}, lg: newLogs(t)}
	nt.ca = newTestCA(t, "Plant Time CA", caNB, caNA)
	nt.stop = nt.l.ntsChronyd(t, "192.0.2.2", nt.ca, nb, na)
	dir := t.TempDir()
	applySite(t, dir, ntsSite(nt.ca, "192.0.2.2"))
	nt.c.set(-time.Hour)
	nt.svc = newNTSService(t, nt.l, dir, nt.c, nt.lg, "")
	return nt
}

// The gate syncs through NTS: one key exchange, then authenticated
// queries; the first poll steps the injected clock to chronyd's time,
// the next slews with the session's cookies (no new key exchange). The
// DHCP lease names a plain NTP server that answers, and is never asked.
func TestNTSSyncs(t *testing.T) {
	now := time.Now()
	nt := newNTSTest(t, now.Add(-time.Hour), now.AddDate(1, 0, 0), now.Add(-time.Hour), now.AddDate(1, 0, 0))
	l, c, lg, svc := nt.l, nt.c, nt.lg, nt.svc
	l.chronyd(t, "192.0.2.3", "local stratum 2") // plain NTP, in the lease
	r := svc.Poll(context.Background())
	if r.Action != ActionStepped || !near(r.Offset, time.Hour, tolerance) || len(r.Used) != 1 || r.Used[0] != "192.0.2.2:4460" {
		t.Fatalf("%s by %s from %v (%v); want stepped by +1h from 192.0.2.2:4460", r.Action, signed(r.Offset), r.Used, r.Err)
	}
	if !near(c.skew, 0, tolerance) || !r.Samples[0].NTS {
		t.Errorf("clock off by %s after the step; sample %s", c.skew, r.Samples[0])
	}
	if lg.count("timesync: servers from the site file's uplink.nts (NTS-authenticated; plain NTP is not used): 192.0.2.2:4460") != 1 ||
		lg.count("timesync: nts 192.0.2.2:4460: key exchange done") != 1 ||
		lg.match(`^timesync: stepped the clock by \+3(599|600)\.\d+s: .* \(first sync of this boot; servers nts 192\.0\.2\.2:4460 \+3`) != 1 {
		t.Error("the NTS source, key exchange or step is not logged")
	}
	if st := lg.lastStatus(); !strings.HasPrefix(st, "synchronised: stepped by +3") || !strings.Contains(st, "(nts 192.0.2.2:4460 +3") {
		t.Errorf("status %q", st)
	}
	for i := 0; i < 3; i++ {
		if r = svc.Poll(context.Background()); r.Action != ActionSlewed || !near(r.Offset, 0, tolerance) {
			t.Fatalf("poll %d: %s by %s (%v); want a small slew", i+2, r.Action, signed(r.Offset), r.Err)
		}
	}
	if n := svc.kes.Load(); n != 1 {
		t.Errorf("%d key exchanges for 4 polls; want 1 (the session's cookies serve the queries)", n)
	}
	if n := svc.leases.Load(); n != 0 {
		t.Errorf("the DHCP lease was asked %d times with NTS servers named", n)
	}
}

// A server whose certificate the site CA did not sign, and one whose
// certificate names another address, are refused at the key exchange
// with the reason; the clock is not touched, the plain NTP server of the
// DHCP lease is not used instead, and the key exchange is not retried at
// once (back-off).
func TestNTSUntrustedServerRefused(t *testing.T) {
	l := newLab(t)
	now := time.Now()
	siteCA := newTestCA(t, "Plant Time CA", now.Add(-time.Hour), now.AddDate(1, 0, 0))
	other := newTestCA(t, "Someone Else", now.Add(-time.Hour), now.AddDate(1, 0, 0))
	l.ntsChronyd(t, "192.0.2.2", other, now.Add(-time.Hour), now.AddDate(1, 0, 0))
	// 192.0.2.4 serves a certificate the site CA signed, for 192.0.2.9.
	dir4 := filepath.Join(l.dir, "nts-192.0.2.4")
	cert, key := siteCA.server(t, dir4, "192.0.2.9", now.Add(-time.Hour), now.AddDate(1, 0, 0))
	l.addr(t, "192.0.2.4")
	l.ntsChronydIn(t, "192.0.2.4", "chrony-192.0.2.4", cert, key, dir4)
	l.chronyd(t, "192.0.2.3", "local stratum 2") // plain NTP, in the lease
	dir := t.TempDir()
	applySite(t, dir, ntsSite(siteCA, "192.0.2.2", "192.0.2.4"))
	c := &testClock{}
	c.set(-time.Hour)
	lg := newLogs(t)
	svc := newNTSService(t, l, dir, c, lg, "")
	r := svc.Poll(context.Background())
	if r.Action != ActionFailed || !errors.Is(r.Err, ErrNoValid) {
		t.Fatalf("%s (%v); want failed: no valid reply", r.Action, r.Err)
	}
	want := map[string]string{
		"192.0.2.2:4460": "certificate not trusted: x509: certificate signed by unknown authority",
		"192.0.2.4:4460": "certificate not trusted: x509: certificate is valid for 192.0.2.9, not 192.0.2.4",
	}
	for _, s := range r.Samples {
		if s.Err == nil || !strings.Contains(s.Err.Error(), want[s.Server]) || !strings.Contains(s.Err.Error(), "(next key exchange in 8s)") {
			t.Errorf("%s: %v; want %q and the back-off", s.Server, s.Err, want[s.Server])
		}
	}
	if steps, slews := c.counts(); steps+slews != 0 {
		t.Error("the clock was changed")
	}
	if st := lg.lastStatus(); !strings.HasPrefix(st, "not synchronised: no valid reply (nts 192.0.2.2:4460 dropped: certificate not trusted: x509: certificate signed by unknown authority") {
		t.Errorf("status %q", st)
	}
	// At once again: no new key exchange (back-off), the lease unused.
	r = svc.Poll(context.Background())
	if r.Action != ActionFailed || !strings.Contains(r.Samples[0].Err.Error(), "ago; next key exchange in") {
		t.Errorf("second poll: %s, %v", r.Action, r.Samples[0].Err)
	}
	if n := svc.kes.Load(); n != 2 {
		t.Errorf("%d key exchanges for two polls of two servers; want 2 (back-off)", n)
	}
	if n := svc.leases.Load(); n != 0 {
		t.Errorf("the DHCP lease was asked %d times with NTS servers named", n)
	}
	if steps, slews := c.counts(); steps+slews != 0 {
		t.Error("the clock was changed")
	}
}

// The first boot with a wildly wrong RTC: the clock says 2020, the CA
// and the server's certificate are valid from an hour ago. Before the
// first sync of the boot the validity times are not checked (the chain
// and the name are): the service syncs, stepping six years. Once
// synchronised this boot (the marker), the times are checked: the same
// wrong clock then finds the certificate not yet valid and is not
// touched. A server the site CA did not sign is refused with the wrong
// clock too, and one whose certificate expired cannot vouch for a time
// after that.
func TestNTSFirstBootWithWrongRTC(t *testing.T) {
	l := newLab(t)
	now := time.Now()
	ca := newTestCA(t, "Plant Time CA", now.Add(-time.Hour), now.AddDate(1, 0, 0))
	l.ntsChronyd(t, "192.0.2.2", ca, now.Add(-time.Hour), now.AddDate(1, 0, 0))
	other := newTestCA(t, "Someone Else", now.Add(-time.Hour), now.AddDate(1, 0, 0))
	l.ntsChronyd(t, "192.0.2.5", other, now.Add(-time.Hour), now.AddDate(1, 0, 0))
	dir := t.TempDir()
	applySite(t, dir, ntsSite(ca, "192.0.2.2"))
	behind := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC).Sub(now)
	lg := newLogs(t)
	marker := filepath.Join(t.TempDir(), "timesync.synced")

	c := &testClock{}
	c.set(behind)
	r := newNTSService(t, l, dir, c, lg, marker).Poll(context.Background())
	if r.Action != ActionStepped || !near(r.Offset, -behind, tolerance) || !near(c.skew, 0, tolerance) {
		t.Fatalf("clock in 2020, first sync: %s by %s (%v), clock off by %s; want stepped to chronyd's time", r.Action, signed(r.Offset), r.Err, c.skew)
	}

	// Synchronised this boot (the marker stays): a clock back in 2020
	// now fails the certificate's times, and nothing is changed.
	pollRefused(t, l, dir, lg, marker, behind, "synced this boot, clock in 2020",
		"certificate not trusted: x509: certificate has expired or is not yet valid")

	// Not synced, clock in 2020, a server the site CA did not sign:
	// refused, the chain is checked without the times.
	applySite(t, dir, ntsSite(ca, "192.0.2.5"))
	os.Remove(marker)
	pollRefused(t, l, dir, lg, marker, behind, "not synced, clock in 2020, untrusted server",
		"certificate not trusted: x509: certificate signed by unknown authority")

	// Not synced, clock in 2020, a server whose certificate (signed by
	// the site CA) expired a year ago: the key exchange passes (no time
	// checks yet), but the time it sends is after its certificate's
	// validity and is not used.
	long := newTestCA(t, "Plant Time CA 2", now.AddDate(-3, 0, 0), now.AddDate(1, 0, 0))
	l.ntsChronyd(t, "192.0.2.6", long, now.AddDate(-2, 0, 0), now.AddDate(-1, 0, 0))
	applySite(t, dir, ntsSite(long, "192.0.2.6"))
	pollRefused(t, l, dir, lg, marker, behind, "not synced, clock in 2020, expired server certificate",
		"is outside its certificate chain's validity")
}

// pollRefused polls once with a new service of the applied policy in dir
// (its one server), its clock off by skew, and fails the test unless
// the server's reply was refused with an error containing want and the
// clock was not changed; what names the case.
func pollRefused(t *testing.T, l *lab, dir string, lg *logs, marker string, skew time.Duration, what, want string) {
	t.Helper()
	c := &testClock{}
	c.set(skew)
	r := newNTSService(t, l, dir, c, lg, marker).Poll(context.Background())
	if r.Action != ActionFailed || len(r.Samples) != 1 || r.Samples[0].Err == nil || !strings.Contains(r.Samples[0].Err.Error(), want) {
		t.Fatalf("%s: %s (%v); want the reply refused: %s", what, r.Action, r.Samples, want)
	}
	if steps, slews := c.counts(); steps+slews != 0 {
		t.Errorf("%s: the clock was changed", what)
	}
}

// tamper is an on-path attacker between the service and chronyd: it
// changes the replies chronyd sends (mode: "strip" its NTS fields,
// "flip" a bit of its transmit timestamp, "drop" it) for the next n
// queries, or answers first with a forged NTS NAK ("nak": with the
// query's unique identifier, copied from the query; "nak-noid": without
// one) and then lets chronyd's reply through ("nak-noid-drop": drops
// it).
type tamper struct {
	mu   sync.Mutex
	mode string
	n    int
}

func (tp *tamper) set(mode string, n int) { tp.mu.Lock(); tp.mode, tp.n = mode, n; tp.mu.Unlock() }

func (tp *tamper) dial(l *lab) func(laddr, raddr string) (net.Conn, error) {
	return func(laddr, raddr string) (net.Conn, error) {
		c, err := l.dial(laddr, raddr)
		if err != nil {
			return nil, err
		}
		tp.mu.Lock()
		defer tp.mu.Unlock()
		mode := ""
		if tp.n > 0 {
			mode = tp.mode
			tp.n--
		}
		return &tamperConn{Conn: c, mode: mode}, nil
	}
}

type tamperConn struct {
	net.Conn
	mode  string
	query []byte
}

func (c *tamperConn) Write(b []byte) (int, error) {
	c.query = append([]byte(nil), b...)
	return c.Conn.Write(b)
}

// forgedNAK is an NTS NAK answering the query written: stratum 0, kiss
// code NTSN, the query's transmit time as its origin, and (withID) the
// query's unique identifier.
func (c *tamperConn) forgedNAK(b []byte, withID bool) int {
	nak := make([]byte, ntpHeader)
	nak[0] = 0x24 // version 4, mode 4 (server)
	copy(nak[12:16], "NTSN")
	copy(nak[24:32], c.query[40:48])
	if f, ok := fields(c.query); ok && withID {
		for _, x := range f {
			if x.typ == extUniqueID {
				l := 4 + len(x.body)
				nak = append(nak, byte(x.typ>>8), byte(x.typ), byte(l>>8), byte(l))
				nak = append(nak, x.body...)
			}
		}
	}
	return copy(b, nak)
}

func (c *tamperConn) Read(b []byte) (int, error) {
	switch c.mode {
	case "nak", "nak-noid", "nak-noid-drop":
		withID, next := c.mode == "nak", ""
		if c.mode == "nak-noid-drop" {
			next = "drop"
		}
		c.mode = next
		return c.forgedNAK(b, withID), nil
	}
	for {
		n, err := c.Conn.Read(b)
		if err != nil {
			return n, err
		}
		switch c.mode {
		case "strip":
			return min(n, ntpHeader), nil
		case "flip":
			b[40] ^= 1
		case "drop":
			continue
		}
		return n, nil
	}
}

// Every reply must be authenticated: chronyd's genuine reply with its
// NTS fields stripped (a plain NTP reply) is not taken, nor one with a
// bit changed; the clock is not touched. Replies lost on the way use up
// the session's cookies: the service then runs a new key exchange and
// syncs again.
func TestNTSRepliesMustBeAuthenticated(t *testing.T) {
	now := time.Now()
	nt := newNTSTest(t, now.Add(-time.Hour), now.AddDate(1, 0, 0), now.Add(-time.Hour), now.AddDate(1, 0, 0))
	l, c, lg, svc := nt.l, nt.c, nt.lg, nt.svc
	tp := &tamper{}
	svc.Dial = tp.dial(l)
	svc.Timeout = 300 * time.Millisecond

	tp.set("strip", 1)
	r := svc.Poll(context.Background())
	if r.Action != ActionFailed || r.Samples[0].Err == nil || !errors.Is(r.Samples[0].Err, errUnauthenticated) ||
		!strings.Contains(r.Samples[0].Err.Error(), "ignored 1 reply(s): a plain NTP reply without NTS fields (NTS stripped on the way?)") {
		t.Fatalf("stripped reply: %s (%v)", r.Action, r.Samples)
	}
	tp.set("flip", 1)
	r = svc.Poll(context.Background())
	if r.Action != ActionFailed || r.Samples[0].Err == nil || !strings.Contains(r.Samples[0].Err.Error(), "auth failed on a reply") {
		t.Fatalf("changed reply: %s (%v)", r.Action, r.Samples)
	}
	if st := lg.lastStatus(); !strings.Contains(st, "nts 192.0.2.2:4460 dropped: auth failed on a reply") {
		t.Errorf("status %q", st)
	}
	if steps, slews := c.counts(); steps+slews != 0 {
		t.Fatal("the clock was changed by an unauthenticated reply")
	}

	// Two cookies were used by those; six more replies lost use up the
	// rest, and the next query runs a new key exchange and syncs.
	tp.set("drop", 6)
	for i := 0; i < 6; i++ {
		if r = svc.Poll(context.Background()); r.Action != ActionFailed {
			t.Fatalf("dropped reply %d: %s", i+1, r.Action)
		}
	}
	if n := svc.kes.Load(); n != 1 {
		t.Errorf("%d key exchanges before the cookies ran out; want 1", n)
	}
	if r = svc.Poll(context.Background()); r.Action != ActionStepped || !near(c.skew, 0, tolerance) {
		t.Fatalf("after the cookies ran out: %s (%v)", r.Action, r.Samples)
	}
	if n := svc.kes.Load(); n != 2 || lg.count("timesync: nts 192.0.2.2:4460: cookies used up: new key exchange done") != 1 {
		t.Errorf("%d key exchanges; want a second one when the cookies ran out, logged", n)
	}
}

// checkReply passes only a well-formed reply with our unique identifier
// under exactly one authenticator; malformed fields (on which the library
// would panic) are refused before the library sees them.
func TestCheckReply(t *testing.T) {
	id := make([]byte, 32)
	id[0] = 7
	hdr := make([]byte, ntpHeader)
	hdr[1] = 2
	ef := func(typ uint16, body []byte) []byte {
		l := 4 + len(body)
		return append([]byte{byte(typ >> 8), byte(typ), byte(l >> 8), byte(l)}, body...)
	}
	aead := func(nl, cl int) []byte {
		b := []byte{byte(nl >> 8), byte(nl), byte(cl >> 8), byte(cl)}
		return append(b, make([]byte, (nl+3)&^3+(cl+3)&^3)...)
	}
	cat := func(parts ...[]byte) []byte {
		var out []byte
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	other := append([]byte{}, id...)
	other[0] = 8
	nak := append([]byte{}, hdr...)
	nak[1] = 0
	copy(nak[12:], "NTSN")
	cases := []struct {
		name string
		pkt  []byte
		want string
	}{
		{"good", cat(hdr, ef(extUniqueID, id), ef(extAEAD, aead(16, 32))), ""},
		{"plain", hdr, "a plain NTP reply"},
		{"no authenticator", cat(hdr, ef(extUniqueID, id)), "no authenticator"},
		{"id after the authenticator", cat(hdr, ef(extAEAD, aead(16, 32)), ef(extUniqueID, id)), "no unique identifier under the authenticator"},
		{"other id", cat(hdr, ef(extUniqueID, other), ef(extAEAD, aead(16, 32))), "not our query's"},
		{"two authenticators", cat(hdr, ef(extUniqueID, id), ef(extAEAD, aead(16, 32)), ef(extAEAD, aead(16, 32))), "more than one"},
		{"empty nonce", cat(hdr, ef(extUniqueID, id), ef(extAEAD, aead(0, 32))), "malformed authenticator"},
		{"short tag", cat(hdr, ef(extUniqueID, id), ef(extAEAD, aead(16, 8))), "malformed authenticator"},
		{"lengths beyond the field", cat(hdr, ef(extUniqueID, id), ef(extAEAD, aead(16, 32)[:20])), "malformed authenticator"},
		{"zero-length field", cat(hdr, []byte{1, 4, 0, 0}), "malformed NTS extension fields"},
		{"field beyond the packet", cat(hdr, []byte{1, 4, 0, 64, 0, 0, 0, 0}), "malformed NTS extension fields"},
		{"trailing bytes", cat(hdr, ef(extUniqueID, id), ef(extAEAD, aead(16, 32)), []byte{0, 0}), "malformed NTS extension fields"},
		{"short", hdr[:40], "malformed NTS extension fields"},
		{"nak without our id", nak, "an NTS NAK without our query's unique identifier"},
		{"nak with another id", cat(nak, ef(extUniqueID, other)), "an NTS NAK without our query's unique identifier"},
	}
	for _, tc := range cases {
		err := checkReply(tc.pkt, id)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v; want it passed", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v; want %q", tc.name, err, tc.want)
		}
	}
	if err := checkReply(cat(nak, ef(extUniqueID, id)), id); !errors.Is(err, errNAK) {
		t.Errorf("NAK with our unique identifier: %v; want errNAK", err)
	}
	if err := checkReply(cat(hdr, ef(extUniqueID, id), ef(extAEAD, aead(16, 32))), nil); err == nil {
		t.Error("a reply passed for a query without a unique identifier")
	}
}

// The server's keys change (chronyd restarted without its key dump: new
// keys): it refuses the session's cookies with an NTS NAK; the service
// drops the session, says why, and the next poll runs a new key exchange
// and syncs.
func TestNTSNewKeyExchangeAfterNAK(t *testing.T) {
	now := time.Now()
	nt := newNTSTest(t, now.Add(-time.Hour), now.AddDate(1, 0, 0), now.Add(-time.Hour), now.AddDate(1, 0, 0))
	l, stop, c, svc := nt.l, nt.stop, nt.c, nt.svc
	svc.Timeout = 500 * time.Millisecond
	if r := svc.Poll(context.Background()); r.Action != ActionStepped {
		t.Fatalf("first poll: %s (%v)", r.Action, r.Samples)
	}
	stop()
	ndir := filepath.Join(l.dir, "nts-192.0.2.2")
	fresh := filepath.Join(l.dir, "nts-192.0.2.2-fresh")
	if err := os.MkdirAll(fresh, 0o755); err != nil {
		t.Fatal(err)
	}
	l.ntsChronydIn(t, "192.0.2.2", "chrony-192.0.2.2-again", filepath.Join(ndir, "server.crt"), filepath.Join(ndir, "server.key"), fresh)
	r := svc.Poll(context.Background())
	if r.Action != ActionFailed || r.Samples[0].Err == nil || !strings.Contains(r.Samples[0].Err.Error(), "the server refused our cookie (NTS NAK") {
		t.Fatalf("old cookies, new server keys: %s (%v); want the NAK", r.Action, r.Samples)
	}
	if r = svc.Poll(context.Background()); r.Action != ActionSlewed || !near(r.Offset, 0, tolerance) {
		t.Fatalf("after the NAK: %s (%v); want a new key exchange and a slew", r.Action, r.Samples)
	}
	if n := svc.kes.Load(); n != 2 {
		t.Errorf("%d key exchanges; want 2", n)
	}
	if steps, slews := c.counts(); steps != 1 || slews != 1 {
		t.Errorf("%d steps, %d slews; want 1, 1", steps, slews)
	}
}

// An applied policy that names NTS servers and then cannot be read (a
// damaged file; after a rollback, one a newer build wrote) does not hand
// the clock to the DHCP lease's plain NTP server, which answers: no
// servers until the policy is readable, and the status says why.
func TestNTSNoDowngradeWhenThePolicyIsUnreadable(t *testing.T) {
	l := newLab(t)
	now := time.Now()
	ca := newTestCA(t, "Plant Time CA", now.Add(-time.Hour), now.AddDate(1, 0, 0))
	l.chronyd(t, "192.0.2.3", "local stratum 2") // plain NTP, in the lease
	dir := t.TempDir()
	applySite(t, dir, ntsSite(ca, "192.0.2.2"))
	path := filepath.Join(dir, site.AppliedFile)
	doc, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, doc[:len(doc)/2], 0o640); err != nil {
		t.Fatal(err)
	}
	c := &testClock{}
	c.set(-time.Hour)
	lg := newLogs(t)
	svc := newNTSService(t, l, dir, c, lg, "")
	r := svc.Poll(context.Background())
	if r.Action != ActionIdle || len(r.Servers) != 0 {
		t.Fatalf("policy unreadable: %s from %v (%v); want idle, no servers", r.Action, r.Servers, r.Samples)
	}
	if steps, slews := c.counts(); steps+slews != 0 || svc.leases.Load() != 0 {
		t.Fatalf("%d steps, %d slews, lease asked %d times; want none", steps, slews, svc.leases.Load())
	}
	if st := lg.lastStatus(); !strings.Contains(st, "site policy unreadable") || !strings.Contains(st, "the DHCP lease's servers are not used instead") {
		t.Errorf("status %q", st)
	}
}

// A NAK forged by someone on the path, answering first, costs neither
// the genuine reply behind it nor the session: one with the query's
// unique identifier (copied from the query) is taken only if no
// authenticated reply comes before the deadline (RFC 8915 5.7), and one
// without it is not ours at all: when the genuine reply is lost as well,
// the query fails as a lost reply does, and the session's cookies serve
// the next poll (no new key exchange, RFC 8915 5.7: the client must
// discard a NAK whose unique identifier is not its query's).
func TestNTSForgedNAKIgnored(t *testing.T) {
	now := time.Now()
	nt := newNTSTest(t, now.Add(-time.Hour), now.AddDate(1, 0, 0), now.Add(-time.Hour), now.AddDate(1, 0, 0))
	l, c, svc := nt.l, nt.c, nt.svc
	tp := &tamper{}
	svc.Dial = tp.dial(l)
	svc.Timeout = 300 * time.Millisecond
	for i, mode := range []string{"nak-noid", "nak", "nak"} {
		tp.set(mode, 1)
		want := ActionSlewed
		if i == 0 {
			want = ActionStepped
		}
		if r := svc.Poll(context.Background()); r.Action != want || r.Samples[0].Err != nil {
			t.Fatalf("poll %d, forged NAK (%s) first: %s (%v); want %s from chronyd's reply", i+1, mode, r.Action, r.Samples, want)
		}
	}
	tp.set("nak-noid-drop", 1)
	r := svc.Poll(context.Background())
	if err := r.Samples[0].Err; r.Action != ActionFailed || err == nil || errors.Is(err, errNAK) ||
		!strings.Contains(err.Error(), "an NTS NAK without our query's unique identifier") {
		t.Fatalf("forged NAK without our identifier, reply lost: %s (%v); want failed, the NAK ignored", r.Action, r.Samples)
	}
	if r := svc.Poll(context.Background()); r.Action != ActionSlewed {
		t.Fatalf("after the forged NAK: %s (%v)", r.Action, r.Samples)
	}
	if !near(c.skew, 0, tolerance) {
		t.Errorf("clock off by %s", c.skew)
	}
	if n := svc.kes.Load(); n != 1 {
		t.Errorf("%d key exchanges; want 1 (a forged NAK must not drop the session)", n)
	}
}

// A session outlives its key exchange: the server's certificate expires
// while the session's cookies still serve, and the server has renewed it
// (chronyd restarted with a new certificate, its keys kept: the old
// cookies still work). Once the clock is synchronised, a chain no longer
// valid by it means a new key exchange, which verifies the new
// certificate and syncs; the old session would have had every reply
// refused (the server's time after its old chain's end) for as long as
// its cookies lasted, that is for ever.
func TestNTSNewKeyExchangeWhenTheCertificateExpires(t *testing.T) {
	now := time.Now()
	expires := now.Add(4 * time.Second).Truncate(time.Second)
	nt := newNTSTest(t, now.Add(-time.Hour), now.AddDate(1, 0, 0), now.Add(-time.Hour), expires)
	l, ca, stop, lg, svc := nt.l, nt.ca, nt.stop, nt.lg, nt.svc
	svc.Timeout = 500 * time.Millisecond
	if r := svc.Poll(context.Background()); r.Action != ActionStepped {
		t.Fatalf("first poll: %s (%v)", r.Action, r.Samples)
	}

	// The renewal: a new certificate, the server's keys (ntsdumpdir)
	// kept, so the session's cookies still work.
	stop()
	l.renewNTSChronyd(t, "192.0.2.2", ca, now.Add(-time.Hour), now.AddDate(0, 3, 0))
	time.Sleep(time.Until(expires.Add(1500 * time.Millisecond)))

	r := svc.Poll(context.Background())
	if r.Action != ActionSlewed || !near(r.Offset, 0, tolerance) {
		t.Fatalf("after the old certificate expired: %s (%v); want a new key exchange and a slew", r.Action, r.Samples)
	}
	if n := svc.kes.Load(); n != 2 {
		t.Errorf("%d key exchanges; want 2", n)
	}
	if lg.match(`^timesync: nts 192\.0\.2\.2:4460: the certificate chain of the session's key exchange is not valid at .*: new key exchange$`) != 1 {
		t.Error("the new key exchange's reason is not logged")
	}
}

// Before the first sync the same: a server whose expired certificate
// cannot vouch for its time has renewed it (keys kept); the poll after
// the refused reply runs a new key exchange, not the old session, and
// syncs.
func TestNTSNewKeyExchangeAfterATimeOutsideTheChain(t *testing.T) {
	now := time.Now()
	nt := newNTSTest(t, now.AddDate(-3, 0, 0), now.AddDate(1, 0, 0), now.AddDate(-2, 0, 0), now.AddDate(-1, 0, 0))
	l, ca, stop, c, svc := nt.l, nt.ca, nt.stop, nt.c, nt.svc
	svc.Timeout = 500 * time.Millisecond
	r := svc.Poll(context.Background())
	if r.Action != ActionFailed || r.Samples[0].Err == nil || !strings.Contains(r.Samples[0].Err.Error(), "is outside its certificate chain's validity") {
		t.Fatalf("expired certificate: %s (%v)", r.Action, r.Samples)
	}
	stop()
	l.renewNTSChronyd(t, "192.0.2.2", ca, now.Add(-time.Hour), now.AddDate(0, 3, 0))
	if r = svc.Poll(context.Background()); r.Action != ActionStepped || !near(c.skew, 0, tolerance) {
		t.Fatalf("renewed certificate: %s (%v); want a new key exchange and a step", r.Action, r.Samples)
	}
	if n := svc.kes.Load(); n != 2 {
		t.Errorf("%d key exchanges; want 2", n)
	}
}
