// Package proxyd is the main of otgate-proxy, the gate's identity-aware
// proxy service (package proxy): the TLS 1.3 listener for logins and
// tunnels, the admin socket, and optionally the syslog export of the audit
// log. SIGHUP reloads the site file; SIGINT/SIGTERM end every session
// (recorded) and exit.
package proxyd

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"flag"
	"fmt"
	"log"
	"math/big"
	"net"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/otgate/otgate/audit"
	"github.com/otgate/otgate/audit/syslog"
	"github.com/otgate/otgate/internal/bootcfg"
	"github.com/otgate/otgate/internal/ready"
	"github.com/otgate/otgate/services/identity/api"
	"github.com/otgate/otgate/services/proxy"
	"github.com/otgate/otgate/services/proxy/adminapi"
	"github.com/otgate/otgate/services/proxy/auth"
	"github.com/otgate/otgate/services/proxy/auth/userca"
)

func Main() {
	listen := flag.String("listen", ":8443", "uplink address of the TLS listener")
	idSock := flag.String("identity", api.DefaultSocket, "identity service socket")
	state := flag.String("state", "/perm/proxy", "user store directory")
	auditDir := flag.String("audit", "/perm/audit", "audit log directory")
	sitePath := flag.String("site", "", "site file (YAML; development hosts)")
	appliedPath := flag.String("policy", "", "the applied compiled policy (the appliance: /perm/policy/applied.cbor); exactly one of -site and -policy")
	adminSock := flag.String("admin", adminapi.DefaultSocket, "admin socket (root only)")
	mark := flag.Int("mark", 0, "SO_MARK on sockets to assets (the segment ruleset lets only this mark reach assets)")
	idle := flag.Duration("idle", 30*time.Minute, "end sessions idle this long")
	maxSessions := flag.Int("max-sessions", 1024, "live sessions at most")
	maxPerUser := flag.Int("max-sessions-per-user", 64, "live sessions per user at most")
	maxCert := flag.Duration("max-cert-validity", 8*time.Hour, "client certificates live at most this long")
	devCert := flag.Bool("dev-self-signed", false, "DEV ONLY: serve a self-signed software certificate instead of the device identity's")
	syslogAddr := flag.String("syslog", "", "export the audit log to this syslog receiver (host:port, RFC 5424 over TCP)")
	syslogTLS := flag.Bool("syslog-tls", false, "use TLS (RFC 5425) to the syslog receiver")
	syslogCA := flag.String("syslog-ca", "", "PEM CA of the syslog receiver (with -syslog-tls)")
	flag.Parse()
	lg := log.New(os.Stderr, "", 0)
	var loader proxy.PolicyLoader
	switch {
	case (*sitePath == "") == (*appliedPath == ""):
		lg.Printf("otgate-proxy: want exactly one of -site FILE.yaml and -policy applied.cbor")
		os.Exit(2)
	case *sitePath != "":
		loader = proxy.SiteFileLoader(*sitePath)
	default:
		loader, *sitePath = proxy.AppliedPolicyLoader(*appliedPath), *appliedPath
	}
	if err := run(lg, loader, *listen, *idSock, *state, *auditDir, *sitePath, *adminSock, *mark, *idle, *maxSessions, *maxPerUser, *maxCert, *devCert, *syslogAddr, *syslogTLS, *syslogCA); err != nil {
		lg.Printf("otgate-proxy: %v", err)
		if errors.Is(err, errQuarantine) {
			os.Exit(bootcfg.ExitNoRestart)
		}
		os.Exit(1)
	}
}

func run(lg *log.Logger, loader proxy.PolicyLoader, listen, idSock, state, auditDir, sitePath, adminSock string, mark int, idle time.Duration,
	maxSessions, maxPerUser int, maxCert time.Duration, devCert bool, syslogAddr string, syslogTLS bool, syslogCA string) error {
	ph := newPhases()
	idc, err := api.Dial(idSock)
	if err != nil {
		return err
	}
	defer idc.Close()
	st, err := idc.Status()
	if err != nil {
		return err
	}
	u, err := url.Parse(st.DeviceURI)
	if err != nil || u.Host == "" {
		return fmt.Errorf("identity status: device URI %q names no site", st.DeviceURI)
	}
	device, err := idc.TLSCertificate()
	if err != nil {
		return err
	}
	ph.done("identity")
	listenerCert := device
	if devCert {
		lg.Printf("otgate-proxy: WARNING: DEV MODE: serving a SELF-SIGNED SOFTWARE certificate, not the device identity's; never use this on a production gate")
		if listenerCert, err = selfSigned(); err != nil {
			return err
		}
	}
	w, err := audit.Open(auditDir, device.PrivateKey.(crypto.Signer), audit.WithErrorHandler(func(err error) { lg.Printf("otgate-proxy: audit log: %v", err) }))
	if err != nil {
		return err
	}
	defer w.Close()
	ph.done("audit log")
	var srv *proxy.Server
	users, err := auth.Open(auth.Config{Dir: state, Sealer: idc, Issuer: auth.IssuerForSite(u.Host), Events: proxy.AuthEvents{Log: w, Logf: lg.Printf},
		OnRevoke: func(user string) {
			if srv != nil {
				srv.RecheckUser(user)
			}
		}})
	if err != nil {
		return err
	}
	defer users.Close()
	ph.done("user store")
	ca, err := userca.Open(userca.Config{Site: u.Host, Sealer: idc, Device: device, Checker: users, MaxValidity: maxCert})
	if err != nil {
		return err
	}
	ph.done("user CA")
	srv, err = proxy.New(proxy.Config{Certificate: listenerCert, Users: users, UserAdmin: users, CA: proxy.UserCA{CA: ca}, Log: w,
		LoadPolicy: loader, Mark: mark, IdleTimeout: idle, MaxCertValidity: maxCert,
		MaxSessions: maxSessions, MaxSessionsPerUser: maxPerUser, Logf: lg.Printf})
	if err != nil {
		return err
	}
	defer srv.Close()
	ph.done("policy")
	if err := os.MkdirAll(filepath.Dir(adminSock), 0o755); err != nil {
		return err
	}
	admin, err := srv.ListenAdmin(adminSock)
	if err != nil {
		return err
	}
	defer admin.Close()
	go admin.Serve()
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if syslogAddr != "" {
		cfg := syslog.Config{Dir: auditDir, Cursor: filepath.Join(state, "syslog.cursor"), Addr: syslogAddr,
			OnError: func(err error) { lg.Printf("otgate-proxy: syslog export: %v", err) }}
		if syslogTLS {
			cfg.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
			if syslogCA != "" {
				b, err := os.ReadFile(syslogCA)
				if err != nil {
					return err
				}
				cfg.TLS.RootCAs = x509.NewCertPool()
				if !cfg.TLS.RootCAs.AppendCertsFromPEM(b) {
					return fmt.Errorf("-syslog-ca %s: no PEM certificate", syslogCA)
				}
			}
		}
		x, err := syslog.New(cfg)
		if err != nil {
			return err
		}
		go x.Run(ctx)
	}
	quarantine := watchIdentity(ctx, idc.Status, identityWatchEvery, lg.Printf)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	lg.Printf("otgate-proxy: listening on %s (site %s, gate key SHA-256 %s; %v)", ln.Addr(), u.Host, spkiHash(listenerCert), ph)
	ready.Notify()
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGHUP, syscall.SIGINT, syscall.SIGTERM)
	for {
		select {
		case err := <-errc:
			return err
		case reason := <-quarantine:
			lg.Printf("otgate-proxy: GATE IN QUARANTINE: %s: ending every session and stopping; init does not restart the proxy (see `otgate identity status` for what to do)", reason)
			ready.Status("QUARANTINE: " + reason)
			srv.Shutdown(proxy.EndQuarantine + ": " + reason)
			return errQuarantine
		case s := <-sig:
			if s != syscall.SIGHUP {
				lg.Printf("otgate-proxy: %v: ending every session and exiting", s)
				return nil
			}
			n, err := srv.Reload()
			if err != nil {
				lg.Printf("otgate-proxy: SIGHUP: %v", err)
				continue
			}
			lg.Printf("otgate-proxy: SIGHUP: policy reloaded from %s, %d sessions ended", sitePath, n)
		}
	}
}

func spkiHash(c *tls.Certificate) string {
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		return "?"
	}
	h := crypto.SHA256.New()
	h.Write(leaf.RawSubjectPublicKeyInfo)
	return fmt.Sprintf("%x", h.Sum(nil))
}

func selfSigned() (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "otgate DEV self-signed"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(30 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
