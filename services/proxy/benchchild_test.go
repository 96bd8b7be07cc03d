package proxy

import (
	"crypto"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/otgate/otgate/audit"
	"github.com/otgate/otgate/internal/sandbox"
	"github.com/otgate/otgate/services/proxy/auth"
	"github.com/otgate/otgate/services/proxy/auth/totp"
	"github.com/otgate/otgate/services/proxy/auth/userca"
	"github.com/otgate/otgate/site"
)

// childGate is what the benchmarks' gate children share: a full gate
// (audit log signed with the device key, user store with user "bench",
// user CA, the site file), under otgate-proxy's seccomp filter, that dials
// every asset at assetAddr on loopback.
type childGate struct {
	Dir       string
	Device    *tls.Certificate
	Sealer    auth.SecretSealer
	AuditOpts []audit.Option
	SiteYAML  string
	Decider   func(s *site.Site, path string) *Policy
	AssetAddr string
}

// serve starts the gate on a loopback port and prints "ADDR SECRET" (the
// listener and bench's TOTP secret) for the parent. The returned close
// stops it, its user store and its log (final checkpoint).
func (c childGate) serve() (srv *Server, closeAll func(), err error) {
	var closers []func()
	closeAll = func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	defer func() {
		if err != nil {
			closeAll()
		}
	}()
	// Confined as otgate-proxy is on the appliance, so that the figures
	// include the seccomp filter's cost on every system call.
	if err := sandbox.DenyRawNetwork(); err != nil {
		return nil, nil, err
	}
	w, err := audit.Open(filepath.Join(c.Dir, "audit"), c.Device.PrivateKey.(crypto.Signer), c.AuditOpts...)
	if err != nil {
		return nil, nil, err
	}
	closers = append(closers, func() { w.Close() })
	users, err := auth.Open(auth.Config{Dir: filepath.Join(c.Dir, "users"), Sealer: c.Sealer,
		Argon2: auth.Argon2Params{Time: 1, MemoryKiB: 8 * 1024, Threads: 1, KeyLen: 32}})
	if err != nil {
		return nil, nil, err
	}
	closers = append(closers, func() { users.Close() })
	en, err := users.AddUser("bench", []byte("correct horse battery"), nil)
	if err != nil {
		return nil, nil, err
	}
	ca, err := userca.Open(userca.Config{Site: "bench.test", Sealer: c.Sealer, Device: c.Device, Checker: users})
	if err != nil {
		return nil, nil, err
	}
	sitePath := filepath.Join(c.Dir, "site.yaml")
	if err := os.WriteFile(sitePath, []byte(c.SiteYAML), 0o600); err != nil {
		return nil, nil, err
	}
	srv, err = New(Config{Certificate: c.Device, Users: users, CA: UserCA{ca}, Log: w,
		LoadPolicy: func() (*Policy, error) {
			s, _, err := site.Load(sitePath, site.Options{})
			if err != nil {
				return nil, err
			}
			return c.Decider(s, sitePath), nil
		},
		Dial: func(netip.AddrPort) (io.ReadWriteCloser, error) {
			conn, err := net.Dial("tcp", c.AssetAddr)
			if err != nil {
				return nil, err
			}
			return conn, nil
		},
		MaxSessions: 10000, MaxSessionsPerUser: 10000})
	if err != nil {
		return nil, nil, err
	}
	closers = append(closers, func() { srv.Close() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	go srv.Serve(ln)
	fmt.Printf("%s %s\n", ln.Addr(), totp.EncodeSecret(en.Key.Secret))
	return srv, closeAll, nil
}
