package proxy

import (
	"context"
	"io"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/otgate/otgate/services/proxy/auth"
)

// slowUsers is a user store whose password check takes longer than the
// gate's handshake timeout (argon2id under TCG on a busy host).
type slowUsers struct {
	Users
	delay time.Duration
}

func (s slowUsers) Authenticate(user string, password []byte, code string, src netip.Addr) (*auth.Login, error) {
	time.Sleep(s.delay)
	return s.Users.Authenticate(user, password, code, src)
}

// A login whose checks outlast HandshakeTimeout still gets its
// certificate: the timeout bounds the handshake and the wait for the
// request, not the gate's own work. (It failed with the client reading
// "tls: bad record MAC": the answer's write hit the deadline set before
// the request was read, after the TLS layer had numbered the record, so
// the close_notify that followed carried the next sequence number.)
func TestSlowLoginStillAnswered(t *testing.T) {
	l := newLab(t)
	g := newGate(t, l, func(c *Config) {
		c.HandshakeTimeout = time.Second
		c.Users = slowUsers{Users: c.Users, delay: 1500 * time.Millisecond}
	})
	g.setGrants(grant{rule: "alice-echo", user: "alice", asset: "echo-1", protocol: "tcp"})
	secret := g.enrol("alice")
	res, _, err := g.login("alice", "correct horse battery", oathtool(t, secret))
	if err != nil {
		if strings.Contains(err.Error(), "bad record MAC") {
			t.Fatalf("slow login: %v (the gate wrote its answer after the deadline, then a close_notify out of sequence)", err)
		}
		t.Fatalf("slow login: %v", err)
	}
	if res.User != "alice" {
		t.Fatalf("login as %q", res.User)
	}
}

// A tunnel whose asset takes longer than HandshakeTimeout to answer the
// gate's connect still gets the gate's accept.
func TestSlowAssetDialStillAccepted(t *testing.T) {
	l := newLab(t)
	g := newGate(t, l, func(c *Config) {
		c.HandshakeTimeout = time.Second
		dial := c.DialContext
		c.DialContext = func(ctx context.Context, a netip.AddrPort) (io.ReadWriteCloser, error) {
			time.Sleep(1500 * time.Millisecond)
			return dial(ctx, a)
		}
	})
	go serveEcho(l.listenPlant(t, 7))
	g.setGrants(grant{rule: "alice-echo", user: "alice", asset: "echo-1", protocol: "tcp"})
	s := g.mustLogin("alice")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, _, err := s.Tunnel(ctx, "echo-1", "tcp")
	if err != nil {
		t.Fatalf("tunnel with a slow asset connect: %v", err)
	}
	c.Close()
}
